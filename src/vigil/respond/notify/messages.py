"""What an update says, per event, built once when it is queued (the outbox keeps it as it was)."""

from __future__ import annotations

from typing import Any

from vigil.model import HypothesisState
from vigil.respond.notify.base import Button, Message
from vigil.respond.spec import to_markdown


def _hint(inv: Any) -> dict[str, str]:
    a = inv.trigger.alert
    fp = (a.fingerprint or a.id) if a else ""
    return {"pagerduty": fp.split(":", 1)[1]} if fp.startswith("pagerduty:") else {}


def _action_buttons(actions: list[dict[str, Any]]) -> list[Button]:
    return [Button(action_id="action_approve", text=f"Approve: {a['summary']}"[:75], value=a["id"], style="primary",
                   confirm=f"Run: {a['summary']}. It changes the system.") for a in actions if a["status"] == "proposed"]


def message(service: Any, space: str, inv_id: str, event: str, data: dict[str, Any]) -> Message:
    st = service.state
    inv = st.get_investigation(inv_id, space_id=space)
    base = dict(event=event, space=space, investigation_id=inv_id, status=inv.status.value, incident_hint=_hint(inv))
    if event == "conclusion":
        hyps = [h for h in st.hypotheses(inv_id) if h.state is not HypothesisState.DISCARDED]
        specs = service.specs(space, inv_id, 1) if hyps else []
        proposed = service.propose_from_specs(space, inv_id, specs) if specs else []
        fields = [("Status", inv.status.value), ("Onset", f"{inv.window.onset:%Y-%m-%d %H:%M:%S}Z")]
        if inv.trigger.alert:
            fields.append(("Alert", inv.trigger.alert.title or inv.trigger.alert.id))
        for h in hyps[:3]:
            fields.append((f"#{h.rank} {h.resource}", f"{h.fault_kind.value}, confidence {h.confidence:.0%}"))
        buttons = []
        for h in hyps[:3]:
            v = f"{inv_id}|{h.id}"
            buttons += [Button(action_id="hyp_accept", text=f"Accept #{h.rank} {h.resource}"[:75], value=v),
                        Button(action_id="hyp_discard", text=f"Discard #{h.rank}", value=v, style="danger"),
                        Button(action_id="hyp_note", text=f"Add note #{h.rank}", value=v)]
        buttons = _action_buttons(proposed) + buttons
        return Message(**base, title=f"Vigil: {inv.summary or inv.status.value}"[:300], text=inv.summary,
                       fields=fields, markdown=to_markdown(specs[0]) if specs else "", buttons=buttons[:25],
                       data={"actions": [a["id"] for a in proposed]})
    if event == "action":
        a = data
        verb = {"proposed": "proposed", "succeeded": "ran", "failed": "failed", "approved": "approved",
                "running": "running"}.get(a["status"], a["status"])
        text = a.get("error") or (a.get("result") or {}).get("message", "")
        fields = [("Action", a["kind"]), ("Status", a["status"])]
        if a.get("approved_by"):
            fields.append(("Approved by", a["approved_by"]))
        if a.get("proposed_by"):
            fields.append(("Proposed by", a["proposed_by"]))
        return Message(**base, title=f"Action {verb}: {a['summary']}"[:300], text=text, fields=fields,
                       buttons=_action_buttons([a]), data={"action": a["id"]})
    if event == "recovery":
        a = data
        rec = a.get("recovery") or {}
        ok = bool(rec.get("recovered"))
        return Message(**base, title=(f"Recovered after: {a['summary']}" if ok else
                                      f"Not recovered yet after: {a['summary']}")[:300],
                       text=str(rec.get("message", "")), fields=[("Action", a["kind"]), ("Recovered", str(ok))],
                       data={"action": a["id"], "recovered": ok})
    if event == "chat":
        return Message(**base, title=f"Answer: {data.get('question', '')}"[:300], text=str(data.get("answer", "")),
                       fields=[("Asked by", str(data.get("asked_by", "")))] if data.get("asked_by") else [],
                       data={"cites": data.get("cites", [])})
    if event == "report":
        return Message(**base, title=f"Post-incident report: {inv.summary}"[:300], markdown=str(data.get("markdown", "")))
    return Message(**base, title=str(data.get("title", event))[:300], text=str(data.get("text", "")))
