"""Jira Cloud issues through REST API v3: the first update creates an issue (``POST /rest/api/3/issue``
with ``fields.project.key``, ``summary``, ``issuetype.name`` and an Atlassian Document Format
``description``; the answer's ``key``), every later one a comment (``POST
/rest/api/3/issue/{key}/comment`` with an ADF ``body``). Basic authentication with an email and an API
token."""

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
    url: str = Field(max_length=2000, description="https://<site>.atlassian.net")
    email: str = Field(min_length=3, max_length=200)
    api_token: SecretRef
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,9}$")
    issue_type: str = Field(default="Task", max_length=60)

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.url, allow_link_local=self.allow_link_local)


def adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: one paragraph per line (text nodes are never markup)."""
    paras = [{"type": "paragraph", "content": [{"type": "text", "text": line}]} if line else {"type": "paragraph"}
             for line in text.splitlines()[:400]]
    return {"type": "doc", "version": 1, "content": paras or [{"type": "paragraph"}]}


class JiraComments(Notifier):
    kind: ClassVar[str] = "jira"
    title: ClassVar[str] = "Jira issue comments"
    Config = Config

    def guard(self) -> None:
        guard_secrets(self.config.api_token)

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        c = self.config
        kw = dict(what="Jira", timeout_s=c.timeout_s, allow_link_local=c.allow_link_local,
                  auth=httpx.BasicAuth(c.email, secret(c.api_token)),
                  headers={"Accept": "application/json", "Content-Type": "application/json"})
        base = f"{c.url.rstrip('/')}/rest/api/3/issue"
        try:
            if thread and thread.get("key"):
                out = request("POST", f"{base}/{thread['key']}/comment", json_body={"body": adf(text_of(message))}, **kw)
                return Sent(result={"comment_id": str(out.get("id", ""))})
            out = request("POST", base, json_body={"fields": {
                "project": {"key": c.project}, "summary": message.title[:250], "issuetype": {"name": c.issue_type},
                "description": adf(text_of(message))}}, **kw)
        except HttpFailure as exc:
            raise Failure(str(exc), exc.retry) from None
        if not isinstance(out, dict) or not out.get("key"):
            raise Failure("Jira answered without the issue's key", retry=False)
        ref = {"key": str(out["key"]), "id": str(out.get("id", ""))}
        return Sent(result=ref, thread=ref)
