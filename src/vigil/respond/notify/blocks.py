"""Block Kit for Slack (https://api.slack.com/reference/block-kit): the conclusion, status updates and
answers as blocks, with Accept / Discard / Add note buttons for the hypotheses and Approve buttons for
proposed actions. Telemetry is text: ``&``, ``<`` and ``>`` are escaped as Slack's mrkdwn requires, so
a log line or a service name cannot mention @channel, link anywhere or break the markup."""

from __future__ import annotations

from typing import Any

from vigil.respond.notify.base import Message

SECTION_MAX = 3000
HEADER_MAX = 150


def esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> dict[str, Any]:
    t = " ".join(str(text).split()) or " "
    return {"type": "plain_text", "text": t[:limit], "emoji": False}


def _md_chunks(text: str, limit: int = SECTION_MAX) -> list[str]:
    out, cur = [], ""
    for line in esc(text).splitlines():
        while len(line) > limit:
            out.append(line[:limit])
            line = line[limit:]
        if len(cur) + len(line) + 1 > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{line}" if cur else line
    if cur:
        out.append(cur)
    return out


def button(action_id: str, text: str, value: str, style: str = "", confirm: str = "") -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "action_id": action_id, "text": _plain(text, 75), "value": value[:2000]}
    if style in ("primary", "danger"):
        b["style"] = style
    if confirm:
        b["confirm"] = {"title": _plain("Are you sure?", 100), "text": {"type": "plain_text", "text": confirm[:300]},
                        "confirm": _plain("Yes", 30), "deny": _plain("Cancel", 30)}
    return b


def blocks(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "header", "text": _plain(m.title, HEADER_MAX)}]
    if m.text:
        out += [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in _md_chunks(m.text)[:5]]
    if m.fields:
        out.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{esc(k)}*\n{esc(v)}"[:2000]}
                                                  for k, v in m.fields[:10]]})
    if m.markdown:
        out.append({"type": "divider"})
        out += [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in _md_chunks(m.markdown)[:20]]
    row: list[dict[str, Any]] = []
    for b in m.buttons:
        row.append(button(b.action_id, b.text, b.value, b.style, b.confirm))
        if len(row) == 5:
            out.append({"type": "actions", "elements": row})
            row = []
    if row:
        out.append({"type": "actions", "elements": row})
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": esc(
        f"Vigil · space {m.space} · investigation {m.investigation_id}")}]})
    return out[:50]


def note_modal(space: str, inv_id: str, hyp_id: str, title: str) -> dict[str, Any]:
    return {"type": "modal", "callback_id": "hyp_note", "private_metadata": f"{space}|{inv_id}|{hyp_id}",
            "title": _plain("Add a note", 24), "submit": _plain("Save", 24), "close": _plain("Cancel", 24),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": esc(title)[:SECTION_MAX]}},
                       {"type": "input", "block_id": "note", "label": _plain("Note", 2000),
                        "element": {"type": "plain_text_input", "action_id": "note", "multiline": True,
                                    "max_length": 2000}}]}
