"""State store: the database behind spaces, tokens, sources, integrations, investigations (with their
journal and hypotheses), the job queue, incidents and the audit log.

SQLite file by default, PostgreSQL when ``VIGIL_DATABASE_URL`` points at one. The schema is owned by
Alembic migrations, applied on open. The records are read and written by one repository per kind
(``vigil.store.repos``) over a unit of work (``uow()``): one session and one transaction, so a change
and its audit entry commit together. The methods of ``StateStore`` below are a thin facade, each one
unit of work, for the worker, the agent and the tests; the interfaces (API, console, MCP, CLI) go
through ``vigil.services`` instead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vigil.model import (
    AgentSpace,
    Alert,
    ApiToken,
    Hypothesis,
    HypothesisState,
    Incident,
    IncidentStatus,
    Investigation,
    InvestigationStatus,
    JournalEntry,
    JournalKind,
    Role,
    Trigger,
    Window,
)
from vigil.store.repos.common import hash_token, new_id
from vigil.store.uow import UnitOfWork

__all__ = ["StateStore", "UnitOfWork", "hash_token", "make_engine", "migrate", "new_id"]
T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # several processes (serve replicas, workers) may start at once on a new database
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7412001)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # several threads (API requests, investigation workers) and processes (the CLI) write: wait
        # for the lock instead of failing at once
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30.0)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record):  # noqa: ANN001
            dbapi_con.isolation_level = None    # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_con.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # noqa: ANN001
            # a write takes the lock up front: a deferred transaction that reads and then writes fails
            # with "database is locked" (no waiting) when another connection wrote in between. A read
            # (a session never begun explicitly, see _Session) stays deferred: with WAL it neither waits
            # for a writer nor holds one up, so a long write (an alert storm) does not stall the API.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("vigil_read") else "BEGIN IMMEDIATE")
    return engine


class _Session(Session):
    """``with s.begin()`` marks a write; a session used without it only reads, and on SQLite runs on the
    engine's read view (a deferred transaction; see ``make_engine``)."""

    def begin(self, *args: Any, **kwargs: Any):
        self.info["write"] = True
        return super().begin(*args, **kwargs)

    def get_bind(self, *args: Any, **kwargs: Any):
        reader = self.info.get("reader")
        if reader is not None and not self.info.get("write"):
            return reader
        return super().get_bind(*args, **kwargs)


class StateStore:
    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        migrate(self.engine)
        reader = self.engine.execution_options(vigil_read=True) if self.engine.dialect.name == "sqlite" else None
        self._session = sessionmaker(self.engine, class_=_Session, expire_on_commit=False,
                                     info={"reader": reader} if reader is not None else None)
        self._sealer = None

    @property
    def sealer(self):
        """Encrypts stored secrets (``vigil.store.crypto``); the key is read on first use."""
        if self._sealer is None:
            from vigil.store.crypto import sealer_from_env
            self._sealer = sealer_from_env()
        return self._sealer

    def check_secret_key(self) -> None:
        """Fail now (one line) when the key is missing, malformed or does not open the stored secrets."""
        with self.read() as u:
            stored = u.integrations.a_sealed_secret()
        sealer = self.sealer
        if stored:
            sealer.open(stored)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    # -- units of work -------------------------------------------------------------------------
    @contextmanager
    def uow(self) -> Iterator[UnitOfWork]:
        """One transaction over every repository: committed when the block ends, rolled back (nothing
        written) when it raises."""
        with self.session() as s, s.begin():
            yield UnitOfWork(s, lambda: self.sealer)

    @contextmanager
    def read(self) -> Iterator[UnitOfWork]:
        """The repositories over a session that writes nothing (on SQLite a deferred transaction: it
        neither waits for a writer nor holds one up)."""
        with self.session() as s:
            yield UnitOfWork(s, lambda: self.sealer)

    def atomic(self, work: Callable[[UnitOfWork], T], retries: int = 5) -> T:
        """Run ``work`` in one unit of work, again when a concurrent writer took the same journal seq
        (a unique-key conflict rolls the whole unit back, so a retry never half-applies)."""
        for _attempt in range(retries):
            try:
                with self.uow() as u:
                    return work(u)
            except IntegrityError:
                continue
        raise RuntimeError("could not commit: conflicting concurrent writes")

    # -- spaces --------------------------------------------------------------------------------
    def put_space(self, space: AgentSpace) -> AgentSpace:
        with self.uow() as u:
            return u.spaces.put(space)

    def get_space(self, space_id: str) -> AgentSpace:
        with self.read() as u:
            return u.spaces.get(space_id)

    def list_spaces(self) -> list[AgentSpace]:
        with self.read() as u:
            return u.spaces.list()

    # -- investigations ------------------------------------------------------------------------
    def create_investigation(self, space_id: str, trigger: Trigger, window: Window, *, enqueue: bool = False,
                             max_attempts: int = 3, note: JournalEntry | None = None,
                             not_before: datetime | None = None) -> Investigation:
        """Record a queued investigation; with ``enqueue`` also its job in the durable queue (to run
        no earlier than ``not_before``), and with ``note`` its first journal entry, all in one
        transaction."""
        with self.uow() as u:
            u.spaces.get(space_id)
            inv = u.investigations.add(space_id, trigger, window, note)
            if enqueue:
                u.jobs.enqueue(inv.id, space_id, inv.created_at, max_attempts, not_before)
            return inv

    def get_investigation(self, inv_id: str, space_id: str | None = None) -> Investigation:
        with self.read() as u:
            return u.investigations.get(inv_id, space_id)

    def list_investigations(self, space_id: str | None = None, status: InvestigationStatus | None = None,
                            limit: int = 50, offset: int = 0) -> list[Investigation]:
        with self.read() as u:
            return u.investigations.list(space_id, status, limit, offset)

    def set_status(self, inv_id: str, status: InvestigationStatus, summary: str | None = None,
                   error: str | None = None, *, finish_job: bool = False) -> Investigation:
        """Move an investigation along its lifecycle; with ``finish_job`` a final status also marks its
        queued job done, in the same transaction."""
        with self.uow() as u:
            return u.investigations.set_status(inv_id, status, summary, error, finish_job=finish_job)

    def count_investigations(self) -> dict[str, int]:
        with self.read() as u:
            return u.investigations.counts()

    # -- journal (append-only: there is no update or delete) ------------------------------------
    def append_journal(self, inv_id: str, kind: JournalKind, message: str, *, source: str = "", query: str = "",
                       rows: int | None = None, data: dict[str, Any] | None = None,
                       step: str | None = None) -> JournalEntry:
        """Append an entry. ``step`` names a run's step (scale-out workers): an entry of the same kind
        already written for that step is returned instead, so a redelivered run writes each step once."""
        try:
            return self.atomic(lambda u: u.investigations.append(inv_id, kind, message, source=source, query=query,
                                                                 rows=rows, data=data, step=step))
        except RuntimeError:
            raise RuntimeError(f"could not append to the journal of {inv_id}") from None

    def journal(self, inv_id: str, after_seq: int = 0) -> list[JournalEntry]:
        with self.read() as u:
            return u.investigations.journal(inv_id, after_seq)

    def journal_steps(self, inv_id: str) -> list[str]:
        """The step keys written for an investigation (scale-out workers), in journal order."""
        with self.read() as u:
            return u.investigations.steps(inv_id)

    # -- hypotheses ----------------------------------------------------------------------------
    def replace_hypotheses(self, inv_id: str, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        """Store the ranked hypotheses of an investigation run (a rerun replaces the proposals)."""
        with self.uow() as u:
            return u.investigations.replace_hypotheses(inv_id, hypotheses)

    def hypotheses(self, inv_id: str) -> list[Hypothesis]:
        with self.read() as u:
            return u.investigations.hypotheses(inv_id)

    def hypotheses_signature(self, inv_id: str) -> list[tuple]:
        """(id, state, note, confidence) of each hypothesis by rank (what a live stream compares)."""
        with self.read() as u:
            return u.investigations.hypotheses_signature(inv_id)

    def judge_hypothesis(self, hyp_id: str, state: HypothesisState | None = None, note: str | None = None,
                         space_id: str | None = None) -> Hypothesis:
        with self.uow() as u:
            return u.investigations.judge(hyp_id, state, note, space_id)

    # -- audit ---------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, space_id: str | None = None, target: str = "",
              detail: dict[str, Any] | None = None) -> None:
        with self.uow() as u:
            u.audit.add(actor, action, space_id, target, detail)

    def audit_log(self, space_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.read() as u:
            return u.audit.log(space_id, limit)

    # -- API tokens (only a sha256 of the secret is stored) ---------------------------------------
    def create_token(self, space_id: str, role: Role, name: str = "", created_by: str = "") -> tuple[str, ApiToken]:
        """Returns the secret (shown once; not recoverable) and the token's record."""
        with self.uow() as u:
            u.spaces.get(space_id)
            return u.tokens.add(space_id, role, name, created_by)

    def resolve_token(self, secret: str) -> ApiToken | None:
        """The live token a secret belongs to, or None."""
        with self.read() as u:
            return u.tokens.by_secret(secret)

    def list_tokens(self, space_id: str) -> list[ApiToken]:
        with self.read() as u:
            return u.tokens.list(space_id)

    def revoke_token(self, token_id: str, space_id: str | None = None) -> ApiToken:
        with self.uow() as u:
            return u.tokens.revoke(token_id, space_id)

    # -- the durable investigation queue ---------------------------------------------------------
    def claim_job(self, owner: str) -> str | None:
        """Take the oldest queued investigation for ``owner``; None when the queue is empty."""
        with self.uow() as u:
            return u.jobs.claim(owner)

    def finish_job(self, inv_id: str, error: str = "") -> None:
        with self.uow() as u:
            u.jobs.finish(inv_id, error)

    def job(self, inv_id: str) -> dict[str, Any] | None:
        with self.read() as u:
            return u.jobs.get(inv_id)

    def recover_jobs(self) -> list[tuple[str, str]]:
        """After a crash: every job left running goes back to the queue (or, past its attempts, fails).
        Call it before any worker of this process starts. Returns (investigation id, what happened)."""
        with self.uow() as u:
            out = u.jobs.recover()
        for inv_id, what in out:
            job = self.job(inv_id) or {}
            if what == "requeued":
                self.append_journal(inv_id, JournalKind.WARNING,
                                    f"the server stopped during attempt {job.get('attempts')} of "
                                    f"{job.get('max_attempts')}; the investigation is queued again", source="server")
            elif what == "gave-up":
                self.append_journal(inv_id, JournalKind.ERROR, f"investigation failed: {job.get('last_error')}",
                                    source="server")
        return out

    # -- leased jobs (scale-out: `vigil worker` processes take jobs named by broker messages) -------
    def lease_job(self, inv_id: str, owner: str, lease_s: float) -> tuple[str, float]:
        """Take the job of ``inv_id`` for ``owner``. Returns (what happened, seconds):
        ``claimed`` (it was queued), ``taken-over`` (its worker stopped renewing its lease for
        ``lease_s``: it died; the run starts again and its steps already journaled are not written
        twice), ``busy`` (a live worker holds it), ``early`` (it may run in ``seconds``), ``done``,
        ``gone`` or ``gave-up`` (interrupted ``max_attempts`` times: failed)."""
        with self.uow() as u:
            what, wait, info = u.jobs.lease(inv_id, owner, lease_s)
        if what == "gave-up":
            self.append_journal(inv_id, JournalKind.ERROR, f"investigation failed: the worker ({info['previous']}) "
                                f"stopped during each of {info['attempts']} attempts", source="server")
        elif what == "taken-over":
            self.append_journal(inv_id, JournalKind.WARNING,
                                f"the worker running attempt {info['attempts'] - 1} of {info['max_attempts']} "
                                f"({info['previous']}) stopped; attempt {info['attempts']} resumes it: steps already "
                                "journaled are not written again", source="server")
        return what, wait

    def renew_lease(self, inv_id: str, owner: str) -> tuple[bool, bool]:
        """Renew ``owner``'s lease on a running job: (still ours, cancel requested)."""
        with self.uow() as u:
            return u.jobs.renew(inv_id, owner)

    def request_cancel(self, inv_id: str) -> bool:
        """Ask the worker holding a running job to stop (it sees it when it renews its lease)."""
        with self.uow() as u:
            return u.jobs.request_cancel(inv_id)

    def mark_dispatched(self, inv_ids: list[str]) -> None:
        with self.uow() as u:
            u.jobs.mark_dispatched(inv_ids)

    def jobs_not_before(self, inv_ids: list[str]) -> dict[str, datetime | None]:
        """{id: not_before} of the queued jobs among ``inv_ids``."""
        with self.read() as u:
            return u.jobs.not_before(inv_ids)

    def jobs_to_dispatch(self, grace_s: float, lease_s: float, limit: int = 500) -> list[tuple[str, datetime | None]]:
        """Jobs a broker message should exist for but may not: queued ones never dispatched (the server
        stopped, or the broker was away, between recording them and publishing), and running ones whose
        worker stopped renewing its lease (a broker that redelivers late, like Redis). (id, not_before)."""
        with self.read() as u:
            return u.jobs.to_dispatch(grace_s, lease_s, limit)

    def queue_depth(self) -> dict[str, int]:
        with self.read() as u:
            return u.jobs.depth()

    def others_waiting(self, inv_id: str, window_s: float = 10.0) -> bool:
        """Whether an investigation that has not started yet may run now and arrived no later than
        ``window_s`` after ``inv_id``'s job: one that gave its preliminary answer yields its worker to
        it (to first answers within a burst, not to later arrivals, so a storm cannot starve it)."""
        with self.read() as u:
            return u.jobs.others_waiting(inv_id, window_s)

    def requeue_job(self, inv_id: str, window_s: float) -> None:
        """Put a running job back in the queue after its preliminary answer, ordered ``window_s`` after
        it first arrived: behind the first answers of its burst, ahead of later arrivals. The pass does
        not count as an attempt (attempts count crashes)."""
        with self.uow() as u:
            u.jobs.requeue(inv_id, window_s)

    def next_job_at(self) -> datetime | None:
        """The earliest time a queued job may run (None when nothing is queued)."""
        with self.read() as u:
            return u.jobs.next_at()

    # -- incidents (alerts are accepted by ``vigil.services.alerts``: deduplication and grouping) --
    def list_incidents(self, space_id: str, status: IncidentStatus | None = None, limit: int = 50,
                       offset: int = 0) -> list[Incident]:
        with self.read() as u:
            return u.alerts.list_incidents(space_id, status, limit, offset)

    def get_incident(self, incident_id: str, space_id: str) -> Incident:
        with self.read() as u:
            return u.alerts.get_incident(incident_id, space_id)

    def latest_alert(self, space_id: str, start: datetime | None = None, end: datetime | None = None) -> Alert | None:
        """The most recent alert received in a space (optionally starting inside [start, end])."""
        with self.read() as u:
            return u.alerts.latest_alert(space_id, start, end)

    # -- sources and webhook integrations -------------------------------------------------------
    def put_source(self, space_id: str, name: str, kind: str, config: dict[str, Any],
                   check: tuple[bool, str] | None = None) -> dict[str, Any]:
        """Create or replace a source; ``check`` (ok, message) records the check made before storing it
        (a replaced source without one loses its old check: it described another config)."""
        return self.put_sources(space_id, [(name, kind, config, check)])[0]

    def put_sources(self, space_id: str, rows: list[tuple[str, str, dict[str, Any], tuple[bool, str] | None]],
                    prune: bool = False) -> list[dict[str, Any]]:
        """Several sources in one transaction; with ``prune`` the space's sources not listed are removed."""
        with self.uow() as u:
            u.spaces.get(space_id)
            return u.sources.put_many(space_id, rows, prune)

    def record_source_check(self, space_id: str, name: str, ok: bool, message: str,
                            at: datetime | None = None) -> dict[str, Any]:
        """Remember the outcome of checking a stored source (shown by ``list_sources``)."""
        with self.uow() as u:
            return u.sources.record_check(space_id, name, ok, message, at)

    def get_source(self, space_id: str, name: str) -> dict[str, Any]:
        with self.read() as u:
            return u.sources.get(space_id, name)

    def list_sources(self, space_id: str) -> list[dict[str, Any]]:
        """[{name, kind, config, created_at, last_check: {at, ok, message} | None}] by name."""
        with self.read() as u:
            return u.sources.list(space_id)

    def delete_source(self, space_id: str, name: str) -> None:
        with self.uow() as u:
            u.sources.delete(space_id, name)

    def put_integration(self, space_id: str, kind: str, config: dict[str, Any], secret: str | None) -> None:
        """``secret`` is stored encrypted (``vigil.store.crypto``)."""
        with self.uow() as u:
            u.spaces.get(space_id)
            u.integrations.put(space_id, kind, config, secret)

    def get_integration(self, space_id: str, kind: str) -> tuple[dict[str, Any], str | None] | None:
        """(config, stored secret) of a space's webhook integration, or None when not configured."""
        with self.read() as u:
            return u.integrations.get(space_id, kind)

    def list_integrations(self, space_id: str) -> list[dict[str, Any]]:
        with self.read() as u:
            return u.integrations.list(space_id)

    def delete_integration(self, space_id: str, kind: str) -> None:
        with self.uow() as u:
            u.integrations.delete(space_id, kind)
