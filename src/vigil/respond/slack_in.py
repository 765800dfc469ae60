"""What Slack sends Vigil, on a space's own endpoints, each request verified with Slack's v0 request
signature (``X-Slack-Signature: v0=hex(HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>"))``,
``X-Slack-Request-Timestamp`` within five minutes; ``slack_sdk.signature.SignatureVerifier``):

- interactivity (``payload=<JSON>`` form bodies): ``block_actions`` from the buttons on Vigil's messages
  (Accept / Discard / Add note on a hypothesis, Approve on a proposed action) and the note modal's
  ``view_submission``. Only the Slack users the space lists as ``approvers`` may act; an approval runs
  its action once (a replayed click finds it approved already and is refused), queued as a durable job;
- events (Events API JSON): ``url_verification``, and messages in an investigation's thread, which
  are chat questions (answered in the thread)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from vigil.errors import InputError, NotFound
from vigil.model import HypothesisState
from vigil.respond.notify.base import secret
from vigil.respond.notify.blocks import note_modal
from vigil.respond.notify.slack import Slack
from vigil.store.respond import Refused

log = logging.getLogger("vigil.respond")
TOLERANCE_S = 300


class SlackRejected(InputError):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def _notifier(service: Any, space: str) -> Slack:
    from vigil.respond.notify import build
    s = service.store.get_setting(space, "notify", "slack")
    if s is None or not s["enabled"]:
        raise SlackRejected(f"Slack is not turned on in space {space!r}", 404)
    n = build("slack", s["config"])
    assert isinstance(n, Slack)
    return n


def verify(service: Any, space: str, body: bytes, headers: Any, now: float | None = None) -> Slack:
    from slack_sdk.signature import SignatureVerifier
    n = _notifier(service, space)
    ts, sig = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
    if not ts or not sig:
        raise SlackRejected("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    try:
        t = int(ts)
    except ValueError:
        raise SlackRejected("X-Slack-Request-Timestamp is not a number") from None
    clock = now if now is not None else time.time()
    if abs(clock - t) > TOLERANCE_S:
        raise SlackRejected("the request is older than five minutes (a replay?)")
    v = SignatureVerifier(secret(n.config.signing_secret), clock=_Clock(clock))
    if not v.is_valid(body, ts, sig):
        raise SlackRejected("X-Slack-Signature does not match the body")
    return n


class _Clock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def _role_actor(service: Any, space: str, n: Slack, user: dict[str, Any]) -> tuple[bool, str]:
    uid = str(user.get("id") or "")
    name = str(user.get("username") or user.get("name") or "")[:60]
    actor = f"slack:{uid}" + (f" ({name})" if name else "")
    return uid in n.config.approvers, actor


def interactivity(service: Any, judge: Any, space: str, body: bytes, headers: Any,
                  now: float | None = None) -> dict[str, Any]:
    n = verify(service, space, body, headers, now)
    form = parse_qs(body.decode("utf-8", "replace"))
    try:
        payload = json.loads(form["payload"][0])
    except (KeyError, IndexError, ValueError):
        raise SlackRejected("the body has no payload JSON", 400) from None
    if not isinstance(payload, dict):
        raise SlackRejected("the payload is not a JSON object", 400)
    operator, actor = _role_actor(service, space, n, payload.get("user") or {})
    kind = payload.get("type")
    if kind == "view_submission":
        view = payload.get("view") or {}
        if view.get("callback_id") != "hyp_note":
            return {}
        if not operator:
            return {"response_action": "errors", "errors": {"note": "only the space's approvers may add notes"}}
        meta = str(view.get("private_metadata", "")).split("|")
        note = (((view.get("state") or {}).get("values") or {}).get("note") or {}).get("note", {}).get("value") or ""
        if len(meta) != 3 or meta[0] != space or not note.strip():
            raise SlackRejected("the note form is incomplete", 400)
        judge(space, meta[1], meta[2], actor, None, note.strip()[:2000])
        return {}
    if kind != "block_actions":
        return {"ok": True, "ignored": str(kind)[:40]}
    out: dict[str, Any] = {"ok": True, "results": []}
    for act in payload.get("actions") or []:
        aid, value = str(act.get("action_id", "")), str(act.get("value", ""))
        if not operator:
            out["results"].append({"action_id": aid, "refused": "only the space's approvers may act from Slack"})
            service.store_audit(space, actor, "slack-refused", aid, {"reason": "not an approver"})
            continue
        try:
            if aid in ("hyp_accept", "hyp_discard"):
                inv_id, hyp_id = value.split("|", 1)
                state = HypothesisState.ACCEPTED if aid == "hyp_accept" else HypothesisState.DISCARDED
                h = judge(space, inv_id, hyp_id, actor, state, None)
                out["results"].append({"action_id": aid, "hypothesis": h.id, "state": h.state.value})
            elif aid == "hyp_note":
                inv_id, hyp_id = value.split("|", 1)
                h = next((x for x in service.state.hypotheses(inv_id) if x.id == hyp_id), None)
                service.state.get_investigation(inv_id, space_id=space)
                if h is None:
                    raise NotFound(f"no hypothesis {hyp_id!r}")
                c = n.client()
                n._call(c.views_open, trigger_id=str(payload.get("trigger_id", "")),
                        view=note_modal(space, inv_id, hyp_id, f"#{h.rank} {h.resource} ({h.fault_kind.value})"))
                out["results"].append({"action_id": aid, "modal": True})
            elif aid == "action_approve":
                # the approval (atomic: a replayed click finds the action approved already) is given and
                # used here; the action runs after the answer, as Slack wants one within 3 seconds, from
                # the durable job queue (a restart in between does not lose it)
                a = service.approve_and_queue(space, value, actor)
                out["results"].append({"action_id": aid, "action": a["id"], "status": "approved"})
            else:
                out["results"].append({"action_id": aid, "ignored": True})
        except (Refused, InputError, NotFound, ValueError) as exc:
            out["results"].append({"action_id": aid, "refused": " ".join(str(exc).split())[:300]})
            service.store_audit(space, actor, "slack-refused", aid, {"reason": " ".join(str(exc).split())[:300]})
    return out


def events(service: Any, space: str, body: bytes, headers: Any, now: float | None = None) -> dict[str, Any]:
    n = verify(service, space, body, headers, now)
    try:
        payload = json.loads(body)
    except ValueError:
        raise SlackRejected("the body is not JSON", 400) from None
    if not isinstance(payload, dict):
        raise SlackRejected("the body is not a JSON object", 400)
    if payload.get("type") == "url_verification":
        return {"challenge": str(payload.get("challenge", ""))[:200]}
    ev = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    if payload.get("type") != "event_callback" or ev.get("type") not in ("message", "app_mention") \
            or ev.get("bot_id") or ev.get("subtype") or not ev.get("thread_ts"):
        return {"ok": True, "ignored": True}
    found = service.store.find_thread("slack", channel=str(ev.get("channel", "")), ts=str(ev.get("thread_ts")))
    if found is None or found[0] != space:
        return {"ok": True, "ignored": "not an investigation's thread"}
    _space, inv_id, _ref = found
    text = str(ev.get("text", ""))
    if text.startswith("<@") and ">" in text:          # "@vigil question"
        text = text.split(">", 1)[1]
    operator, actor = _role_actor(service, space, n, {"id": ev.get("user")})
    ans = service.ask(space, inv_id, text, actor, operator)
    return {"ok": True, "intent": ans.intent, "started": ans.started}
