"""ServiceNow incidents through the Table API: the first update creates an incident
(``POST /api/now/table/incident`` with ``short_description`` and ``description``; the answer's
``result.sys_id`` and ``result.number``), every later one adds a work note to it
(``PATCH /api/now/table/incident/{sys_id}`` with ``{"work_notes": ...}``). Basic authentication."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field

from vigil.respond.http import HttpFailure, request
from vigil.respond.notify.base import Failure, Message, Notifier, NotifierConfig, Sent, guard_secrets, secret
from vigil.respond.notify.pagerduty import text_of
from vigil.sources.connector import SecretRef
from vigil.sources.safety import check_url


class Config(NotifierConfig):
    instance_url: str = Field(max_length=2000, description="https://<instance>.service-now.com")
    username: str = Field(min_length=1, max_length=200)
    password: SecretRef
    assignment_group: str | None = Field(default=None, max_length=100)

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.instance_url, allow_link_local=self.allow_link_local)


class ServiceNowWorkNotes(Notifier):
    kind: ClassVar[str] = "servicenow"
    title: ClassVar[str] = "ServiceNow incident work notes"
    Config = Config

    def guard(self) -> None:
        guard_secrets(self.config.password)

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        c = self.config
        base = f"{c.instance_url.rstrip('/')}/api/now/table/incident"
        kw = dict(what="ServiceNow", timeout_s=c.timeout_s, allow_link_local=c.allow_link_local,
                  auth=httpx.BasicAuth(c.username, secret(c.password)),
                  headers={"Accept": "application/json", "Content-Type": "application/json"})
        try:
            if thread and thread.get("sys_id"):
                out = request("PATCH", f"{base}/{thread['sys_id']}", json_body={"work_notes": text_of(message)}, **kw)
                return Sent(result={"number": str((out.get("result") or {}).get("number", ""))})
            body = {"short_description": message.title[:160], "description": text_of(message)}
            if c.assignment_group:
                body["assignment_group"] = c.assignment_group
            out = request("POST", base, json_body=body, **kw)
        except HttpFailure as exc:
            raise Failure(str(exc), exc.retry) from None
        res = out.get("result") if isinstance(out, dict) else None
        if not isinstance(res, dict) or not res.get("sys_id"):
            raise Failure("ServiceNow answered without result.sys_id", retry=False)
        ref = {"sys_id": str(res["sys_id"]), "number": str(res.get("number", ""))}
        return Sent(result=ref, thread=ref)
