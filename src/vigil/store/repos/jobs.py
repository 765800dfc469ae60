"""The durable investigation queue: one job per queued investigation, claimed by a worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from vigil.model import InvestigationStatus
from vigil.store.repos.common import Repo, utc
from vigil.store.tables import InvestigationRow, JobRow, JournalRow


class JobRepo(Repo):
    def enqueue(self, inv_id: str, space_id: str, at: datetime, max_attempts: int = 3,
                not_before: datetime | None = None) -> None:
        """Queue an investigation (added in this transaction) to run no earlier than ``not_before``."""
        self.s.flush()
        self.s.add(JobRow(investigation_id=inv_id, space_id=space_id, status="queued", attempts=0,
                          max_attempts=max_attempts, owner=None, enqueued_at=at, not_before=not_before,
                          updated_at=at, last_error=""))

    def claim(self, owner: str) -> str | None:
        """Take the oldest queued investigation for ``owner``; None when the queue is empty."""
        now = datetime.now(UTC)
        row = self.s.scalars(select(JobRow).where(JobRow.status == "queued",
                                                  (JobRow.not_before.is_(None)) | (JobRow.not_before <= now))
                             .order_by(JobRow.enqueued_at).limit(1).with_for_update(skip_locked=True)).first()
        if row is None:
            return None
        row.status, row.owner, row.attempts = "running", owner, row.attempts + 1
        row.updated_at = datetime.now(UTC)
        return row.investigation_id

    def finish(self, inv_id: str, error: str = "") -> None:
        row = self.s.get(JobRow, inv_id)
        if row is not None:
            row.status, row.owner, row.updated_at = "done", None, datetime.now(UTC)
            if error:
                row.last_error = error[:2000]

    def get(self, inv_id: str) -> dict[str, Any] | None:
        r = self.s.get(JobRow, inv_id)
        return None if r is None else {"status": r.status, "attempts": r.attempts, "max_attempts": r.max_attempts,
                                       "owner": r.owner, "last_error": r.last_error}

    def recover(self) -> list[tuple[str, str]]:
        """After a crash: every job left running goes back to the queue (or, past its attempts, fails).
        Returns (investigation id, what happened)."""
        out: list[tuple[str, str]] = []
        now = datetime.now(UTC)
        for job in self.s.scalars(select(JobRow).where(JobRow.status == "running").with_for_update()).all():
            inv = self.s.get(InvestigationRow, job.investigation_id)
            status = InvestigationStatus(inv.status) if inv is not None else InvestigationStatus.CANCELLED
            job.owner, job.updated_at = None, now
            if status.finished:
                job.status = "done"
                out.append((job.investigation_id, "finished"))
            elif job.attempts >= job.max_attempts:
                job.status = "done"
                job.last_error = f"the server stopped during each of {job.attempts} attempts"
                if status is InvestigationStatus.RUNNING:
                    inv.status, inv.finished_at, inv.error = InvestigationStatus.FAILED.value, now, job.last_error
                else:
                    inv.status, inv.finished_at, inv.error = InvestigationStatus.CANCELLED.value, now, job.last_error
                out.append((job.investigation_id, "gave-up"))
            else:
                job.status = "queued"
                if status is InvestigationStatus.RUNNING:
                    inv.status = InvestigationStatus.QUEUED.value
                out.append((job.investigation_id, "requeued"))
        return out

    def depth(self) -> dict[str, int]:
        rows = self.s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
        return {"queued": 0, "running": 0, "done": 0} | {st: n for st, n in rows}

    def others_waiting(self, inv_id: str, window_s: float = 10.0) -> bool:
        """Whether an investigation that has not started yet may run now and arrived no later than
        ``window_s`` after ``inv_id``'s job."""
        now = datetime.now(UTC)
        mine = self.s.get(JobRow, inv_id)
        if mine is None:
            return False
        horizon = utc(mine.enqueued_at) + timedelta(seconds=window_s)
        return self.s.scalars(select(JobRow.investigation_id).join(
            InvestigationRow, InvestigationRow.id == JobRow.investigation_id).where(
            JobRow.status == "queued", InvestigationRow.status == InvestigationStatus.QUEUED.value,
            JobRow.enqueued_at <= horizon,
            (JobRow.not_before.is_(None)) | (JobRow.not_before <= now)).limit(1)).first() is not None

    def requeue(self, inv_id: str, window_s: float) -> None:
        """Put a running job back in the queue, ordered ``window_s`` after it first arrived; the pass does
        not count as an attempt (attempts count crashes)."""
        row = self.s.get(JobRow, inv_id, with_for_update=True)
        if row is not None and row.status == "running":
            row.status, row.owner, row.updated_at = "queued", None, datetime.now(UTC)
            row.enqueued_at = utc(row.enqueued_at) + timedelta(seconds=window_s)
            row.attempts = max(0, row.attempts - 1)

    def next_at(self) -> datetime | None:
        """The earliest time a queued job may run (None when nothing is queued)."""
        rows = self.s.execute(select(func.count(), func.min(JobRow.not_before)).where(JobRow.status == "queued")
                              .group_by(JobRow.not_before.is_(None))).all()
        if not rows:
            return None
        if any(n and nb is None for n, nb in rows):
            return datetime.now(UTC)
        return min(utc(nb) for _n, nb in rows)

    # -- leased jobs (scale-out: `vigil worker` processes take jobs named by broker messages) -------
    def lease(self, inv_id: str, owner: str, lease_s: float) -> tuple[str, float, dict[str, Any]]:
        """Take the job of ``inv_id`` for ``owner`` (see ``StateStore.lease_job``). Returns (what happened,
        seconds, {previous owner, attempts, max_attempts} when it was taken over or given up)."""
        now = datetime.now(UTC)
        job = self.s.get(JobRow, inv_id, with_for_update=True)
        inv = self.s.get(InvestigationRow, inv_id)
        if job is None or inv is None:
            return "gone", 0.0, {}
        status = InvestigationStatus(inv.status)
        if job.status == "done":
            return "done", 0.0, {}
        if status.finished:
            job.status, job.owner, job.updated_at = "done", None, now
            return "done", 0.0, {}
        if job.status == "queued":
            if job.not_before is not None and utc(job.not_before) > now:
                return "early", (utc(job.not_before) - now).total_seconds(), {}
            job.status, job.owner, job.attempts, job.updated_at = "running", owner, job.attempts + 1, now
            return "claimed", 0.0, {}
        # running
        if job.owner == owner:
            return "claimed", 0.0, {}
        idle = (now - utc(job.updated_at)).total_seconds()
        if idle < lease_s:
            return "busy", lease_s - idle, {}
        previous = job.owner
        if job.attempts >= job.max_attempts:
            job.status, job.owner, job.updated_at = "done", None, now
            job.last_error = f"the worker stopped during each of {job.attempts} attempts"
            inv.status = (InvestigationStatus.FAILED if status is InvestigationStatus.RUNNING
                          else InvestigationStatus.CANCELLED).value
            inv.finished_at, inv.error = now, job.last_error
            what = "gave-up"
        else:
            job.owner, job.attempts, job.updated_at = owner, job.attempts + 1, now
            refining = self.s.scalars(select(JournalRow.id).where(JournalRow.investigation_id == inv_id,
                                                                  JournalRow.step.like("f%")).limit(1)).first()
            if status is InvestigationStatus.RUNNING and refining is None:
                inv.status = InvestigationStatus.QUEUED.value    # the first pass starts again
            what = "taken-over"
        return what, 0.0, {"previous": previous, "attempts": job.attempts, "max_attempts": job.max_attempts}

    def renew(self, inv_id: str, owner: str) -> tuple[bool, bool]:
        """Renew ``owner``'s lease on a running job: (still ours, cancel requested)."""
        job = self.s.get(JobRow, inv_id, with_for_update=True)
        if job is None or job.status != "running" or job.owner != owner:
            return False, bool(job and job.cancel_requested)
        job.updated_at = datetime.now(UTC)
        return True, bool(job.cancel_requested)

    def request_cancel(self, inv_id: str) -> bool:
        """Ask the worker holding a running job to stop (it sees it when it renews its lease)."""
        job = self.s.get(JobRow, inv_id, with_for_update=True)
        if job is None or job.status != "running":
            return False
        job.cancel_requested = True
        return True

    def mark_dispatched(self, inv_ids: list[str]) -> None:
        now = datetime.now(UTC)
        for i in range(0, len(inv_ids), 500):
            for job in self.s.scalars(select(JobRow).where(JobRow.investigation_id.in_(inv_ids[i:i + 500]))).all():
                job.dispatched_at = now

    def not_before(self, inv_ids: list[str]) -> dict[str, datetime | None]:
        """{id: not_before} of the queued jobs among ``inv_ids``."""
        out: dict[str, datetime | None] = {}
        for i in range(0, len(inv_ids), 500):
            for inv_id, nb in self.s.execute(select(JobRow.investigation_id, JobRow.not_before).where(
                    JobRow.investigation_id.in_(inv_ids[i:i + 500]), JobRow.status == "queued")).all():
                out[inv_id] = utc(nb)
        return out

    def to_dispatch(self, grace_s: float, lease_s: float, limit: int = 500) -> list[tuple[str, datetime | None]]:
        """Queued jobs never dispatched and running ones whose worker stopped renewing its lease."""
        now = datetime.now(UTC)
        queued = self.s.execute(select(JobRow.investigation_id, JobRow.not_before).where(
            JobRow.status == "queued", JobRow.dispatched_at.is_(None),
            JobRow.enqueued_at <= now - timedelta(seconds=grace_s)).order_by(JobRow.enqueued_at).limit(limit)).all()
        stale = self.s.execute(select(JobRow.investigation_id, JobRow.not_before).where(
            JobRow.status == "running", JobRow.updated_at <= now - timedelta(seconds=lease_s),
            JobRow.dispatched_at.is_(None) | (JobRow.dispatched_at <= now - timedelta(seconds=lease_s)))
            .limit(limit)).all()
        return [(i, utc(nb)) for i, nb in [*queued, *stale]]
