"""GitHub issues through the REST API: the first update opens an issue (``POST
/repos/{owner}/{repo}/issues`` with ``title``, ``body``, ``labels``; the answer's ``number``), every
later one comments on it (``POST /repos/{owner}/{repo}/issues/{number}/comments`` with ``body``).
Headers per GitHub's REST reference: ``Authorization: Bearer``, ``Accept: application/vnd.github+json``,
``X-GitHub-Api-Version: 2022-11-28``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from vigil.respond.http import HttpFailure, request
from vigil.respond.notify.base import Failure, Message, Notifier, NotifierConfig, Sent, guard_secrets, secret
from vigil.respond.notify.pagerduty import text_of
from vigil.sources.connector import SecretRef
from vigil.sources.safety import check_url


class Config(NotifierConfig):
    api_url: str = Field(default="https://api.github.com", max_length=2000)
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
    token: SecretRef
    labels: list[str] = Field(default_factory=lambda: ["incident"], max_length=10)

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.api_url, allow_link_local=self.allow_link_local)


class GitHubIssues(Notifier):
    kind: ClassVar[str] = "github"
    title: ClassVar[str] = "GitHub issues"
    Config = Config

    def guard(self) -> None:
        guard_secrets(self.config.token)

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        c = self.config
        base = f"{c.api_url.rstrip('/')}/repos/{c.repository}/issues"
        kw = dict(what="GitHub", timeout_s=c.timeout_s, allow_link_local=c.allow_link_local,
                  headers={"Authorization": f"Bearer {secret(c.token)}", "Accept": "application/vnd.github+json",
                           "X-GitHub-Api-Version": "2022-11-28"})
        body = (message.markdown or text_of(message))[:60_000]
        try:
            if thread and thread.get("number"):
                out = request("POST", f"{base}/{thread['number']}/comments",
                              json_body={"body": f"**{message.title}**\n\n{body}"}, **kw)
                return Sent(result={"comment_id": str(out.get("id", "")), "url": str(out.get("html_url", ""))})
            out = request("POST", base, json_body={"title": message.title[:250], "body": body, "labels": c.labels},
                          **kw)
        except HttpFailure as exc:
            raise Failure(str(exc), exc.retry) from None
        if not isinstance(out, dict) or not isinstance(out.get("number"), int):
            raise Failure("GitHub answered without the issue's number", retry=False)
        ref = {"number": out["number"], "url": str(out.get("html_url", ""))}
        return Sent(result=ref, thread=ref)
