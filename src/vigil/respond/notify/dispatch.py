"""Delivers the outbox: a thread that (a) queues the conclusion of every investigation that finished in
a space with notifiers turned on, and (b) sends due updates, each at most once at a time across
processes (a lease on the row), retrying with exponential backoff while the receiver is away, and giving
up (``dead``, with the error) after ``max_attempts`` or on an error that retrying cannot fix. Updates of
one investigation to one notifier go in order. Nothing is lost across a restart: the queue is the
state database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.errors import NotFound
from vigil.respond.jobs import JOBS
from vigil.respond.notify import build
from vigil.respond.notify.base import Failure, Message
from vigil.respond.rounds import Rounds

log = logging.getLogger("vigil.respond")
RECENT_H = 6.0      # conclusions older than this are not queued (a space that turns a notifier on later)


class Dispatcher(Rounds):
    thread_name = "vigil-outbox"

    def __init__(self, service: Any, interval_s: float = 1.0, backoff_s: float = 2.0, max_backoff_s: float = 300.0,
                 max_attempts: int = 12) -> None:
        super().__init__(interval_s)
        self.service = service
        self.store = service.store
        self.backoff_s, self.max_backoff_s, self.max_attempts = backoff_s, max_backoff_s, max_attempts

    # -- one round ------------------------------------------------------------------------------------
    def tick(self) -> int:
        self.queue_conclusions()
        sent = 0
        for item in self.store.claim(exclude=JOBS):          # the respond jobs have their own runner
            sent += self.deliver(item)
        return sent

    def queue_conclusions(self) -> int:
        """Every investigation that finished after its space turned a notifier on gets its conclusion
        queued once (the outbox's key makes a second time a no-op)."""
        n = 0
        since_by_space: dict[str, datetime] = {}
        for s in self.store.enabled_settings("notify"):
            cur = since_by_space.get(s["space_id"])
            since_by_space[s["space_id"]] = min(cur, s["updated_at"]) if cur else s["updated_at"]
        recent = datetime.now(UTC) - timedelta(hours=RECENT_H)
        for space, since in since_by_space.items():
            for inv in self.service.state.list_investigations(space, limit=50):
                if inv.status.finished and inv.finished_at and inv.finished_at >= max(since, recent):
                    n += self.service.publish_conclusion(inv)
        return n

    def _retry_in(self, attempts: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2 ** max(0, attempts)))

    def deliver(self, item: dict[str, Any]) -> int:
        setting = self.store.get_setting(item["space_id"], "notify", item["notifier"])
        if setting is None or not setting["enabled"]:
            self.store.failed(item["id"], f"notifier {item['notifier']} is off in this space", None)
            return 0
        try:
            notifier = build(item["notifier"], setting["config"])
            msg = Message.model_validate(item["payload"])
            inv = item["investigation_id"]
            thread = self.store.thread(inv, item["notifier"]) if inv else None
            sent = notifier.send(msg, thread)
        except Failure as exc:
            last = item["attempts"] + 1 >= self.max_attempts
            self.store.failed(item["id"], str(exc), None if (not exc.retry or last) else self._retry_in(item["attempts"]))
            return 0
        except NotFound as exc:
            self.store.failed(item["id"], str(exc), None)
            return 0
        except Exception as exc:   # noqa: BLE001 - a bug or an unexpected answer: retried, then dead
            log.exception("delivering outbox item %s failed", item["id"])
            last = item["attempts"] + 1 >= self.max_attempts
            self.store.failed(item["id"], f"internal error ({type(exc).__name__})",
                              None if last else self._retry_in(item["attempts"]))
            return 0
        if sent.thread and item["investigation_id"]:
            self.store.set_thread(item["space_id"], item["investigation_id"], item["notifier"], sent.thread)
        self.store.sent(item["id"], {**sent.result, "at": datetime.now(UTC).isoformat()})
        return 1
