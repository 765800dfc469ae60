"""Notifiers: one file per kind, one line each in ``NOTIFIERS``; ``publish`` queues an update for every
notifier a space turned on (the durable outbox); ``respond.notify.dispatch`` delivers them."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vigil.errors import InputError
from vigil.respond.notify.base import Button, Failure, Message, Notifier, Sent
from vigil.respond.notify.github import GitHubIssues
from vigil.respond.notify.jira import JiraComments
from vigil.respond.notify.pagerduty import PagerDutyNotes
from vigil.respond.notify.servicenow import ServiceNowWorkNotes
from vigil.respond.notify.slack import Slack
from vigil.respond.notify.webhook import WebhookOut

NOTIFIERS: dict[str, type[Notifier]] = {
    Slack.kind: Slack,
    PagerDutyNotes.kind: PagerDutyNotes,
    ServiceNowWorkNotes.kind: ServiceNowWorkNotes,
    JiraComments.kind: JiraComments,
    GitHubIssues.kind: GitHubIssues,
    WebhookOut.kind: WebhookOut,
}


def build(kind: str, config: dict[str, Any]) -> Notifier:
    cls = NOTIFIERS.get(kind)
    if cls is None:
        raise InputError(f"unknown notifier {kind[:40]!r} (one of {', '.join(NOTIFIERS)})")
    try:
        return cls(cls.Config.model_validate(config))
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e.get("loc", ())) or "value"
        raise InputError(f"{kind} config: {where}: {e.get('msg', 'invalid')}") from None
    except ValueError as exc:
        raise InputError(f"{kind} config: {' '.join(str(exc).split())[:200]}") from None


def publish(service: Any, space: str, inv_id: str, event: str, data: dict[str, Any], key: str) -> int:
    """Queue ``event`` for every notifier the space turned on (and that takes the event). ``key`` makes
    it idempotent: the same update is queued once per notifier. Returns how many were queued."""
    from vigil.respond.notify.messages import message
    targets = [s for s in service.store.list_settings(space, "notify")
               if s["enabled"] and event in (s["config"].get("events") or [event])]
    if targets:        # already queued (the dispatcher looks every second): build nothing
        have = service.store.queued_keys([f"{t['kind']}:{key}" for t in targets])
        targets = [t for t in targets if f"{t['kind']}:{key}" not in have]
    if not targets:
        return 0
    msg = message(service, space, inv_id, event, data)
    n = 0
    for t in targets:
        n += service.store.enqueue(space, inv_id, t["kind"], event, msg.model_dump(mode="json"),
                                   f"{t['kind']}:{key}")
    return n


__all__ = ["NOTIFIERS", "Button", "Failure", "Message", "Notifier", "Sent", "build", "publish"]
