"""Slack through the Web API with ``slack-sdk``: an investigation's updates in one thread, in a
configured channel or in a channel of its own (``conversations.create``, then ``conversations.invite``
of the configured people); the conclusion opens the thread (``chat.postMessage``), every later update
is a reply (``chat.postMessage`` with ``thread_ts``). Buttons on the messages come back through the
space's signed interactivity endpoint (``respond.slack_in``)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from vigil.respond.notify.base import Failure, Message, Notifier, NotifierConfig, Sent, guard_secrets, secret
from vigil.respond.notify.blocks import blocks, esc
from vigil.sources.connector import SecretRef
from vigil.sources.safety import check_url

USER = r"^[UW][A-Z0-9]{2,20}$"


class Config(NotifierConfig):
    api_url: str = Field(default="https://slack.com/api/", max_length=2000)
    bot_token: SecretRef
    signing_secret: SecretRef
    channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]{2,20}$", description="A channel id.")
    channel_per_incident: bool = False
    channel_prefix: str = Field(default="inc-", pattern=r"^[a-z0-9_-]{1,20}$")
    invite: list[str] = Field(default_factory=list, max_length=50)
    approvers: list[str] = Field(default_factory=list, max_length=200,
                                 description="Slack user ids who act as operators: judge hypotheses, approve actions.")

    @field_validator("invite", "approvers")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        for u in v:
            if not re.fullmatch(USER, u):
                raise ValueError(f"{u[:30]!r} is not a Slack user id")
        return v

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.api_url, allow_link_local=self.allow_link_local)
        if not self.channel and not self.channel_per_incident:
            raise ValueError("give a channel, or channel_per_incident: true")


def slack_text(m: Message) -> str:
    """The message's top-level ``text`` (what notifications show): Slack parses it as mrkdwn, so escaped."""
    return esc(m.title[:3000])


class Slack(Notifier):
    kind: ClassVar[str] = "slack"
    title: ClassVar[str] = "Slack"
    Config = Config

    def guard(self) -> None:
        guard_secrets(self.config.bot_token, self.config.signing_secret)

    def client(self):
        from slack_sdk import WebClient
        api = self.config.api_url if self.config.api_url.endswith("/") else self.config.api_url + "/"
        return WebClient(token=secret(self.config.bot_token), base_url=api, timeout=int(max(1, self.config.timeout_s)),
                         retry_handlers=[])

    def _call(self, fn, **kw) -> dict[str, Any]:
        from slack_sdk.errors import SlackApiError, SlackRequestError
        try:
            return fn(**kw).data
        except SlackApiError as exc:
            status = exc.response.status_code
            err = str((exc.response.data or {}).get("error", "")) if isinstance(exc.response.data, dict) else ""
            retry = status == 429 or status >= 500 or err in ("ratelimited", "service_unavailable", "fatal_error",
                                                              "internal_error", "request_timeout")
            what = err if status == 200 else f"HTTP {status}" + (f" ({err[:60]})" if err else "")
            raise Failure(f"Slack answered {what}", retry) from None
        except (SlackRequestError, OSError) as exc:
            raise Failure(f"cannot reach Slack: {type(exc).__name__}", True) from None

    def _open(self, c, message: Message) -> dict[str, Any]:
        cfg = self.config
        if not cfg.channel_per_incident:
            return {"channel": cfg.channel}
        name = (cfg.channel_prefix + re.sub(r"[^a-z0-9_-]", "-", message.investigation_id.lower()))[:80]
        out = self._call(c.conversations_create, name=name, is_private=False)
        chan = out["channel"]["id"]
        if cfg.invite:
            self._call(c.conversations_invite, channel=chan, users=",".join(cfg.invite))
        return {"channel": chan, "channel_name": name}

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        c = self.client()
        opened = None
        if not thread or not thread.get("ts"):
            where = thread if thread and thread.get("channel") else self._open(c, message)
            out = self._call(c.chat_postMessage, channel=where["channel"], text=slack_text(message),
                             blocks=blocks(message), unfurl_links=False, unfurl_media=False)
            opened = {**where, "channel": out.get("channel", where["channel"]), "ts": out["ts"]}
            return Sent(result={"channel": opened["channel"], "ts": out["ts"]}, thread=opened)
        out = self._call(c.chat_postMessage, channel=thread["channel"], thread_ts=thread["ts"],
                         text=slack_text(message), blocks=blocks(message), unfurl_links=False, unfurl_media=False)
        return Sent(result={"channel": thread["channel"], "ts": out.get("ts", "")})
