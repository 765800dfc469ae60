"""Durable respond jobs: an approved action waiting to run and a recovery check waiting for its time are
rows of the outbox table (their own ``notifier`` names, never sent anywhere), so a restart of the server
(even ``kill -9``) loses neither. A thread of ``vigil serve`` claims due jobs (leased, so of two server
processes on one database only one takes a job) and:

- ``vigil.action``: starts a queued action (one atomic UPDATE from ``queued`` to ``running``) and runs it.
  A job claimed again while its action is ``running`` means the process that ran it stopped mid-run (its
  lease lapsed): the action is marked failed as interrupted and is not run again, as its effect is unknown;
- ``vigil.verify``: evaluates the spec's verify step once; not recovered yet and not past its deadline,
  it is due again ``check_every_s`` later; recovered, or past the deadline, the answer is recorded,
  journaled, audited and posted."""

from __future__ import annotations

import logging
from typing import Any

from vigil.respond.rounds import Rounds

log = logging.getLogger("vigil.respond")

ACTION = "vigil.action"
VERIFY = "vigil.verify"
JOBS = (ACTION, VERIFY)
RUN_LEASE_S = 960.0        # longer than any action may take (timeout_s <= 300 per call, a few calls)
CHECK_LEASE_S = 60.0


class Jobs(Rounds):
    thread_name = "vigil-respond-jobs"

    def __init__(self, service: Any, interval_s: float = 1.0, check_every_s: float = 5.0) -> None:
        super().__init__(interval_s)
        self.service = service
        self.store = service.store
        self.check_every_s = check_every_s

    def tick(self) -> int:
        """Run every due job once; how many finished."""
        done = 0
        for item in self.store.claim(RUN_LEASE_S, only=(ACTION,), ordered=False):
            done += self._run(item)
        for item in self.store.claim(CHECK_LEASE_S, only=(VERIFY,), ordered=False):
            done += self._check(item)
        return done

    def _run(self, item: dict[str, Any]) -> int:
        try:
            self.service.run_queued(str(item["payload"].get("action_id", "")))
        except Exception as exc:   # noqa: BLE001 - recorded on the action by the service; the job is done
            log.exception("action job %s failed", item["id"])
            self.store.failed(item["id"], f"internal error ({type(exc).__name__})", None)
            return 0
        self.store.sent(item["id"], {"ran": True})
        return 1

    def _check(self, item: dict[str, Any]) -> int:
        p = item["payload"]
        try:
            rec = self.service.check_recovery(str(p.get("action_id", "")), float(p.get("until", 0.0)))
        except Exception as exc:   # noqa: BLE001 - e.g. the telemetry store busy: checked again later
            log.exception("recovery check job %s failed", item["id"])
            self.store.failed(item["id"], f"internal error ({type(exc).__name__})", self.check_every_s)
            return 0
        if not rec.get("final"):           # not recovered yet, and there is time left
            self.store.failed(item["id"], str(rec.get("message", "not recovered yet")), self.check_every_s)
            return 0
        self.store.sent(item["id"], {"recovered": bool(rec.get("recovered")), "message": rec.get("message", "")})
        return 1
