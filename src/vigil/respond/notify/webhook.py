"""Signed outgoing webhooks: every update as JSON (``event``, ``space``, ``investigation``, ``title``,
``text``, ``status``, ``fields``, ``markdown``), signed as Vigil's generic trigger is verified
(``X-Vigil-Timestamp``, ``X-Vigil-Signature: sha256=hex(HMAC-SHA256(secret, "<ts>.<body>"))``)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field

from vigil.respond.actions.webhook import sign
from vigil.respond.http import HttpFailure, request
from vigil.respond.notify.base import Failure, Message, Notifier, NotifierConfig, Sent, guard_secrets, secret
from vigil.sources.connector import SecretRef
from vigil.sources.safety import check_url


class Config(NotifierConfig):
    url: str = Field(max_length=2000)
    secret: SecretRef

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.url, allow_link_local=self.allow_link_local)


class WebhookOut(Notifier):
    kind: ClassVar[str] = "webhook"
    title: ClassVar[str] = "Signed webhook"
    Config = Config

    def guard(self) -> None:
        guard_secrets(self.config.secret)

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        c = self.config
        body = json.dumps({"event": message.event, "space": message.space, "investigation": message.investigation_id,
                           "title": message.title, "text": message.text, "status": message.status,
                           "fields": [list(f) for f in message.fields], "markdown": message.markdown},
                          sort_keys=True).encode()
        try:
            request("POST", c.url, what="the webhook receiver", timeout_s=c.timeout_s,
                    allow_link_local=c.allow_link_local, content=body,
                    headers={"Content-Type": "application/json", **sign(secret(c.secret), body)})
        except HttpFailure as exc:
            raise Failure(str(exc), exc.retry) from None
        return Sent(result={"bytes": len(body)})
