"""PagerDuty incident notes: ``POST {api}/incidents/{id}/notes`` with ``{"note": {"content": ...}}``
(PagerDuty REST API v2, "Create a note on an incident"), ``Authorization: Token token=<key>`` and the
``From`` header naming a PagerDuty user's email (required with an account-level key). The incident is
the one the investigation came from (a PagerDuty webhook's ``pagerduty:<id>`` fingerprint) or the
configured one; with neither, there is nothing to add a note to and the update is skipped."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from vigil.respond.http import HttpFailure, request
from vigil.respond.notify.base import Failure, Message, Notifier, NotifierConfig, Sent, guard_secrets, secret
from vigil.sources.connector import SecretRef
from vigil.sources.safety import check_url


class Config(NotifierConfig):
    api_url: str = Field(default="https://api.pagerduty.com", max_length=2000)
    token: SecretRef
    from_email: str = Field(min_length=3, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    incident_id: str | None = Field(default=None, max_length=40, pattern=r"^[A-Z0-9]+$")

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.api_url, allow_link_local=self.allow_link_local)


def text_of(m: Message, limit: int = 25_000) -> str:
    lines = [m.title]
    if m.text:
        lines.append(m.text)
    lines += [f"{k}: {v}" for k, v in m.fields]
    if m.markdown:
        lines += ["", m.markdown]
    return "\n".join(lines)[:limit]


class PagerDutyNotes(Notifier):
    kind: ClassVar[str] = "pagerduty"
    title: ClassVar[str] = "PagerDuty incident notes"
    Config = Config

    def guard(self) -> None:
        guard_secrets(self.config.token)

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        c = self.config
        incident = (thread or {}).get("incident_id") or message.incident_hint.get("pagerduty") or c.incident_id
        if not incident:
            return Sent(result={"skipped": "no PagerDuty incident for this investigation"})
        try:
            out = request("POST", f"{c.api_url.rstrip('/')}/incidents/{incident}/notes", what="PagerDuty",
                          timeout_s=c.timeout_s, allow_link_local=c.allow_link_local,
                          headers={"Authorization": f"Token token={secret(c.token)}", "From": c.from_email,
                                   "Accept": "application/vnd.pagerduty+json;version=2",
                                   "Content-Type": "application/json"},
                          json_body={"note": {"content": text_of(message)}})
        except HttpFailure as exc:
            raise Failure(str(exc), exc.retry) from None
        note = out.get("note") if isinstance(out, dict) else None
        return Sent(result={"note_id": str((note or {}).get("id", ""))},
                    thread=None if thread else {"incident_id": incident})
