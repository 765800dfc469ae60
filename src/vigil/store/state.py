"""State store: spaces, investigations, the append-only journal, hypotheses and the audit log.

SQLite file by default, PostgreSQL when ``VIGIL_DATABASE_URL`` points at one. The schema is
owned by Alembic migrations, applied on open."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vigil.errors import InputError, NotFound
from vigil.model import (
    AgentSpace,
    Alert,
    AlertOutcome,
    AlertStatus,
    ApiToken,
    Hypothesis,
    HypothesisState,
    Incident,
    IncidentAlert,
    IncidentStatus,
    IncomingAlert,
    Investigation,
    InvestigationStatus,
    JournalEntry,
    JournalKind,
    Role,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.model.investigation import can_transition
from vigil.store.tables import (
    AuditRow,
    HypothesisRow,
    IncidentAlertRow,
    IncidentRow,
    IntegrationRow,
    InvestigationRow,
    JobRow,
    JournalRow,
    SourceRow,
    SpaceRow,
    TokenRow,
)

MIGRATIONS = Path(__file__).parent / "migrations"


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


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


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def group_key(labels: dict[str, str], group_by: list[str]) -> str:
    return ",".join(f"{k}={labels.get(k, '')}" for k in sorted(group_by))[:300]


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
        with self.session() as s:
            stored = s.scalars(select(IntegrationRow.secret).where(IntegrationRow.secret.like("fernet:%"))
                               .limit(1)).first()
        sealer = self.sealer
        if stored:
            sealer.open(stored)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    # -- spaces --------------------------------------------------------------------------------
    def put_space(self, space: AgentSpace) -> AgentSpace:
        config = space.model_dump(mode="json", include={"services", "sources", "integrations", "policies",
                                                       "alerting"})
        with self.session() as s, s.begin():
            row = s.get(SpaceRow, space.id)
            if row is None:
                s.add(SpaceRow(id=space.id, name=space.name or space.id, description=space.description,
                               config=config, created_at=space.created_at))
            else:
                row.name, row.description, row.config = space.name or space.id, space.description, config
        return space

    def get_space(self, space_id: str) -> AgentSpace:
        with self.session() as s:
            row = s.get(SpaceRow, space_id)
            if row is None:
                raise NotFound(f"no space named {space_id!r}")
            return AgentSpace(id=row.id, name=row.name, description=row.description,
                              created_at=_utc(row.created_at), **row.config)

    def list_spaces(self) -> list[AgentSpace]:
        with self.session() as s:
            ids = s.scalars(select(SpaceRow.id).order_by(SpaceRow.id)).all()
        return [self.get_space(i) for i in ids]

    # -- investigations ------------------------------------------------------------------------
    def create_investigation(self, space_id: str, trigger: Trigger, window: Window, *, enqueue: bool = False,
                             max_attempts: int = 3, note: JournalEntry | None = None,
                             not_before: datetime | None = None) -> Investigation:
        """Record a queued investigation; with ``enqueue`` also its job in the durable queue (to run
        no earlier than ``not_before``), and with ``note`` its first journal entry, all in one
        transaction (a worker of ``vigil serve`` runs it)."""
        self.get_space(space_id)
        with self.session() as s, s.begin():
            return self._add_investigation(s, space_id, trigger, window, enqueue, max_attempts, note, not_before)

    @staticmethod
    def settle_until(onset: datetime, settle_s: float, now: datetime | None = None) -> datetime | None:
        """When an investigation of an incident starting at ``onset`` may run: ``settle_s`` after it, or
        None when that is already past."""
        at = _utc(onset) + timedelta(seconds=settle_s)
        return at if at > (now or datetime.now(UTC)) else None

    @staticmethod
    def _add_investigation(s: Session, space_id: str, trigger: Trigger, window: Window, enqueue: bool,
                           max_attempts: int, note: JournalEntry | None = None,
                           not_before: datetime | None = None) -> Investigation:
        inv = Investigation(id=new_id("inv"), space_id=space_id, trigger=trigger, window=window)
        s.add(InvestigationRow(
            id=inv.id, space_id=space_id, trigger=trigger.model_dump(mode="json"),
            window_start=window.start, window_end=window.end, onset=window.onset,
            status=inv.status.value, summary="", error="", created_at=inv.created_at))
        if note is not None:
            s.flush()
            s.add(JournalRow(investigation_id=inv.id, seq=1, ts=note.ts, kind=note.kind.value, message=note.message,
                             source=note.source, query=note.query, rows=note.rows,
                             data=note.model_dump(mode="json")["data"]))
        if enqueue:
            s.flush()
            s.add(JobRow(investigation_id=inv.id, space_id=space_id, status="queued", attempts=0,
                         max_attempts=max_attempts, owner=None, enqueued_at=inv.created_at,
                         not_before=not_before, updated_at=inv.created_at, last_error=""))
        return inv

    @staticmethod
    def _inv(row: InvestigationRow) -> Investigation:
        return Investigation(
            id=row.id, space_id=row.space_id, trigger=Trigger.model_validate(row.trigger),
            window=Window(start=_utc(row.window_start), end=_utc(row.window_end), onset=_utc(row.onset)),
            status=InvestigationStatus(row.status), summary=row.summary, error=row.error,
            created_at=_utc(row.created_at), started_at=_utc(row.started_at), finished_at=_utc(row.finished_at))

    def get_investigation(self, inv_id: str, space_id: str | None = None) -> Investigation:
        with self.session() as s:
            row = s.get(InvestigationRow, inv_id)
            if row is None or (space_id is not None and row.space_id != space_id):
                raise NotFound(f"no investigation {inv_id!r}" + (f" in space {space_id!r}" if space_id else ""))
            return self._inv(row)

    def list_investigations(self, space_id: str | None = None, status: InvestigationStatus | None = None,
                            limit: int = 50, offset: int = 0) -> list[Investigation]:
        q = select(InvestigationRow).order_by(InvestigationRow.created_at.desc(), InvestigationRow.id)
        if space_id:
            q = q.where(InvestigationRow.space_id == space_id)
        if status:
            q = q.where(InvestigationRow.status == status.value)
        with self.session() as s:
            return [self._inv(r) for r in s.scalars(q.limit(limit).offset(offset)).all()]

    def set_status(self, inv_id: str, status: InvestigationStatus, summary: str | None = None,
                   error: str | None = None, *, finish_job: bool = False) -> Investigation:
        """Move an investigation along its lifecycle; with ``finish_job`` a final status also marks its
        queued job done, in the same transaction."""
        with self.session() as s, s.begin():
            row = s.get(InvestigationRow, inv_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no investigation {inv_id!r}")
            old = InvestigationStatus(row.status)
            if not can_transition(old, status):
                raise InputError(f"investigation {inv_id} cannot go from {old} to {status}")
            now = datetime.now(UTC)
            row.status = status.value
            if status is InvestigationStatus.RUNNING:
                row.started_at = now
            if status.finished:
                row.finished_at = now
            if summary is not None:
                row.summary = summary
            if error is not None:
                row.error = error
            if finish_job and status.finished:
                job = s.get(JobRow, inv_id)
                if job is not None:
                    job.status, job.owner, job.updated_at = "done", None, now
                    if error:
                        job.last_error = error[:2000]
            return self._inv(row)

    # -- journal (append-only: there is no update or delete) ------------------------------------
    def append_journal(self, inv_id: str, kind: JournalKind, message: str, *, source: str = "", query: str = "",
                       rows: int | None = None, data: dict[str, Any] | None = None,
                       step: str | None = None) -> JournalEntry:
        """Append an entry. ``step`` names a run's step (scale-out workers): an entry of the same kind
        already written for that step is returned instead, so a redelivered run writes each step once."""
        for _attempt in range(5):
            try:
                with self.session() as s, s.begin():
                    # lock the investigation row: appends to one journal are serialised (PostgreSQL)
                    if s.get(InvestigationRow, inv_id, with_for_update=True) is None:
                        raise NotFound(f"no investigation {inv_id!r}")
                    if step is not None:
                        done = s.scalars(select(JournalRow).where(JournalRow.investigation_id == inv_id,
                                                                  JournalRow.step == step)).first()
                        if done is not None:
                            if done.kind == kind.value:
                                return self._entry(done)
                            step = None     # the run went another way this time: a new entry
                    seq = (s.scalar(select(func.max(JournalRow.seq)).where(JournalRow.investigation_id == inv_id))
                           or 0) + 1
                    entry = JournalEntry(investigation_id=inv_id, seq=seq, kind=kind, message=message,
                                         source=source, query=query, rows=rows, data=data or {})
                    s.add(JournalRow(investigation_id=inv_id, seq=seq, ts=entry.ts, kind=kind.value,
                                     message=message, source=source, query=query, rows=rows,
                                     data=entry.model_dump(mode="json")["data"], step=step))
                return entry
            except IntegrityError:
                continue  # a concurrent writer took this seq; take the next one
        raise RuntimeError(f"could not append to the journal of {inv_id}")

    @staticmethod
    def _entry(r: JournalRow) -> JournalEntry:
        return JournalEntry(investigation_id=r.investigation_id, seq=r.seq, ts=_utc(r.ts), kind=JournalKind(r.kind),
                            message=r.message, source=r.source, query=r.query, rows=r.rows, data=r.data or {})

    def journal(self, inv_id: str, after_seq: int = 0) -> list[JournalEntry]:
        with self.session() as s:
            rows = s.scalars(select(JournalRow).where(JournalRow.investigation_id == inv_id,
                                                      JournalRow.seq > after_seq).order_by(JournalRow.seq)).all()
            return [self._entry(r) for r in rows]

    def journal_steps(self, inv_id: str) -> list[str]:
        """The step keys written for an investigation (scale-out workers), in journal order."""
        with self.session() as s:
            return list(s.scalars(select(JournalRow.step).where(JournalRow.investigation_id == inv_id,
                                                                JournalRow.step.is_not(None))
                                  .order_by(JournalRow.seq)).all())

    # -- hypotheses ----------------------------------------------------------------------------
    def replace_hypotheses(self, inv_id: str, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        """Store the ranked hypotheses of an investigation run (a rerun replaces the proposals)."""
        out = []
        with self.session() as s, s.begin():
            for row in s.scalars(select(HypothesisRow).where(HypothesisRow.investigation_id == inv_id)).all():
                s.delete(row)
            for h in hypotheses:
                h = h.model_copy(update={"id": h.id or new_id("hyp"), "investigation_id": inv_id})
                dumped = h.model_dump(mode="json")
                s.add(HypothesisRow(id=h.id, investigation_id=inv_id, rank=h.rank, resource=h.resource,
                                    fault_kind=h.fault_kind.value, confidence=h.confidence, score=h.score,
                                    why=h.why, evidence=dumped["evidence"], path=dumped["path"],
                                    state=h.state.value, note=h.note))
                out.append(h)
        return out

    @staticmethod
    def _hyp(r: HypothesisRow) -> Hypothesis:
        return Hypothesis(id=r.id, investigation_id=r.investigation_id, rank=r.rank, resource=r.resource,
                          fault_kind=r.fault_kind, confidence=r.confidence, score=r.score, why=r.why,
                          evidence=r.evidence, path=r.path, state=r.state, note=r.note)

    def hypotheses(self, inv_id: str) -> list[Hypothesis]:
        with self.session() as s:
            rows = s.scalars(select(HypothesisRow).where(HypothesisRow.investigation_id == inv_id)
                             .order_by(HypothesisRow.rank)).all()
            return [self._hyp(r) for r in rows]

    def hypotheses_signature(self, inv_id: str) -> list[tuple]:
        """(id, state, note, confidence) of each hypothesis by rank: what a live stream compares to know
        whether to read the hypotheses (and their evidence, which can be large) again."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(HypothesisRow.id, HypothesisRow.state, HypothesisRow.note, HypothesisRow.confidence)
                .where(HypothesisRow.investigation_id == inv_id).order_by(HypothesisRow.rank)).all()]

    def judge_hypothesis(self, hyp_id: str, state: HypothesisState | None = None, note: str | None = None,
                         space_id: str | None = None) -> Hypothesis:
        with self.session() as s, s.begin():
            row = s.get(HypothesisRow, hyp_id)
            if row is not None and space_id is not None:
                inv = s.get(InvestigationRow, row.investigation_id)
                if inv is None or inv.space_id != space_id:
                    row = None
            if row is None:
                raise NotFound(f"no hypothesis {hyp_id!r}")
            if state is not None:
                row.state = state.value
            if note is not None:
                row.note = note
            return self._hyp(row)

    # -- audit ---------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, space_id: str | None = None, target: str = "",
              detail: dict[str, Any] | None = None) -> None:
        with self.session() as s, s.begin():
            s.add(AuditRow(ts=datetime.now(UTC), actor=actor, action=action, space_id=space_id, target=target,
                           detail=detail or {}))

    def audit_log(self, space_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if space_id:
            q = q.where(AuditRow.space_id == space_id)
        with self.session() as s:
            return [{"ts": _utc(r.ts), "actor": r.actor, "action": r.action, "space_id": r.space_id,
                     "target": r.target, "detail": r.detail} for r in s.scalars(q).all()]

    # -- API tokens (only a sha256 of the secret is stored) ---------------------------------------
    @staticmethod
    def _token(r: TokenRow) -> ApiToken:
        return ApiToken(id=r.id, space_id=r.space_id, role=Role(r.role), name=r.name, created_at=_utc(r.created_at),
                        created_by=r.created_by, revoked_at=_utc(r.revoked_at))

    def create_token(self, space_id: str, role: Role, name: str = "", created_by: str = "") -> tuple[str, ApiToken]:
        """Returns the secret (shown once; not recoverable) and the token's record."""
        self.get_space(space_id)
        secret = "vgl_" + secrets.token_urlsafe(32)
        row = TokenRow(id=new_id("tok"), space_id=space_id, role=Role(role).value, name=name[:200],
                       hash=hash_token(secret), created_at=datetime.now(UTC), created_by=created_by[:200])
        with self.session() as s, s.begin():
            s.add(row)
        return secret, self._token(row)

    def resolve_token(self, secret: str) -> ApiToken | None:
        """The live token a secret belongs to, or None."""
        if not secret or len(secret) > 200:
            return None
        with self.session() as s:
            row = s.scalar(select(TokenRow).where(TokenRow.hash == hash_token(secret)))
            if row is None or row.revoked_at is not None:
                return None
            return self._token(row)

    def list_tokens(self, space_id: str) -> list[ApiToken]:
        with self.session() as s:
            rows = s.scalars(select(TokenRow).where(TokenRow.space_id == space_id)
                             .order_by(TokenRow.created_at, TokenRow.id)).all()
            return [self._token(r) for r in rows]

    def revoke_token(self, token_id: str, space_id: str | None = None) -> ApiToken:
        with self.session() as s, s.begin():
            row = s.get(TokenRow, token_id)
            if row is None or (space_id is not None and row.space_id != space_id):
                raise NotFound(f"no token {token_id!r}" + (f" in space {space_id!r}" if space_id else ""))
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return self._token(row)

    # -- the durable investigation queue ---------------------------------------------------------
    def claim_job(self, owner: str) -> str | None:
        """Take the oldest queued investigation for ``owner``; None when the queue is empty."""
        now = datetime.now(UTC)
        with self.session() as s, s.begin():
            row = s.scalars(select(JobRow).where(JobRow.status == "queued",
                                                 (JobRow.not_before.is_(None)) | (JobRow.not_before <= now))
                            .order_by(JobRow.enqueued_at).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            row.status, row.owner, row.attempts = "running", owner, row.attempts + 1
            row.updated_at = datetime.now(UTC)
            return row.investigation_id

    def finish_job(self, inv_id: str, error: str = "") -> None:
        with self.session() as s, s.begin():
            row = s.get(JobRow, inv_id)
            if row is not None:
                row.status, row.owner, row.updated_at = "done", None, datetime.now(UTC)
                if error:
                    row.last_error = error[:2000]

    def job(self, inv_id: str) -> dict[str, Any] | None:
        with self.session() as s:
            r = s.get(JobRow, inv_id)
            return None if r is None else {"status": r.status, "attempts": r.attempts, "max_attempts": r.max_attempts,
                                           "owner": r.owner, "last_error": r.last_error}

    def recover_jobs(self) -> list[tuple[str, str]]:
        """After a crash: every job left running goes back to the queue (or, past its attempts, fails).
        Call it before any worker of this process starts. Returns (investigation id, what happened)."""
        out: list[tuple[str, str]] = []
        now = datetime.now(UTC)
        with self.session() as s, s.begin():
            for job in s.scalars(select(JobRow).where(JobRow.status == "running").with_for_update()).all():
                inv = s.get(InvestigationRow, job.investigation_id)
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
        now = datetime.now(UTC)
        what, wait = "", 0.0
        with self.session() as s, s.begin():
            job = s.get(JobRow, inv_id, with_for_update=True)
            inv = s.get(InvestigationRow, inv_id)
            if job is None or inv is None:
                return "gone", 0.0
            status = InvestigationStatus(inv.status)
            if job.status == "done":
                return "done", 0.0
            if status.finished:
                job.status, job.owner, job.updated_at = "done", None, now
                return "done", 0.0
            if job.status == "queued":
                if job.not_before is not None and _utc(job.not_before) > now:
                    return "early", (_utc(job.not_before) - now).total_seconds()
                job.status, job.owner, job.attempts, job.updated_at = "running", owner, job.attempts + 1, now
                return "claimed", 0.0
            # running
            if job.owner == owner:
                return "claimed", 0.0
            idle = (now - _utc(job.updated_at)).total_seconds()
            if idle < lease_s:
                return "busy", lease_s - idle
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
                refining = s.scalars(select(JournalRow.id).where(JournalRow.investigation_id == inv_id,
                                                                 JournalRow.step.like("f%")).limit(1)).first()
                if status is InvestigationStatus.RUNNING and refining is None:
                    inv.status = InvestigationStatus.QUEUED.value    # the first pass starts again
                what = "taken-over"
            attempts, max_attempts = job.attempts, job.max_attempts
        if what == "gave-up":
            self.append_journal(inv_id, JournalKind.ERROR, f"investigation failed: the worker ({previous}) stopped "
                                f"during each of {attempts} attempts", source="server")
        else:
            self.append_journal(inv_id, JournalKind.WARNING,
                                f"the worker running attempt {attempts - 1} of {max_attempts} ({previous}) stopped; "
                                f"attempt {attempts} resumes it: steps already journaled are not written again",
                                source="server")
        return what, wait

    def renew_lease(self, inv_id: str, owner: str) -> tuple[bool, bool]:
        """Renew ``owner``'s lease on a running job: (still ours, cancel requested)."""
        with self.session() as s, s.begin():
            job = s.get(JobRow, inv_id, with_for_update=True)
            if job is None or job.status != "running" or job.owner != owner:
                return False, bool(job and job.cancel_requested)
            job.updated_at = datetime.now(UTC)
            return True, bool(job.cancel_requested)

    def request_cancel(self, inv_id: str) -> bool:
        """Ask the worker holding a running job to stop (it sees it when it renews its lease)."""
        with self.session() as s, s.begin():
            job = s.get(JobRow, inv_id, with_for_update=True)
            if job is None or job.status != "running":
                return False
            job.cancel_requested = True
            return True

    def mark_dispatched(self, inv_ids: list[str]) -> None:
        now = datetime.now(UTC)
        with self.session() as s, s.begin():
            for i in range(0, len(inv_ids), 500):
                for job in s.scalars(select(JobRow).where(JobRow.investigation_id.in_(inv_ids[i:i + 500]))).all():
                    job.dispatched_at = now

    def jobs_not_before(self, inv_ids: list[str]) -> dict[str, datetime | None]:
        """{id: not_before} of the queued jobs among ``inv_ids``."""
        out: dict[str, datetime | None] = {}
        with self.session() as s:
            for i in range(0, len(inv_ids), 500):
                for inv_id, nb in s.execute(select(JobRow.investigation_id, JobRow.not_before).where(
                        JobRow.investigation_id.in_(inv_ids[i:i + 500]), JobRow.status == "queued")).all():
                    out[inv_id] = _utc(nb)
        return out

    def jobs_to_dispatch(self, grace_s: float, lease_s: float, limit: int = 500) -> list[tuple[str, datetime | None]]:
        """Jobs a broker message should exist for but may not: queued ones never dispatched (the server
        stopped, or the broker was away, between recording them and publishing), and running ones whose
        worker stopped renewing its lease (a broker that redelivers late, like Redis). (id, not_before)."""
        now = datetime.now(UTC)
        with self.session() as s:
            queued = s.execute(select(JobRow.investigation_id, JobRow.not_before).where(
                JobRow.status == "queued", JobRow.dispatched_at.is_(None),
                JobRow.enqueued_at <= now - timedelta(seconds=grace_s)).order_by(JobRow.enqueued_at).limit(limit)).all()
            stale = s.execute(select(JobRow.investigation_id, JobRow.not_before).where(
                JobRow.status == "running", JobRow.updated_at <= now - timedelta(seconds=lease_s),
                JobRow.dispatched_at.is_(None) | (JobRow.dispatched_at <= now - timedelta(seconds=lease_s)))
                .limit(limit)).all()
        return [(i, _utc(nb)) for i, nb in [*queued, *stale]]

    def queue_depth(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
        return {"queued": 0, "running": 0, "done": 0} | {st: n for st, n in rows}

    def others_waiting(self, inv_id: str, window_s: float = 10.0) -> bool:
        """Whether an investigation that has not started yet may run now and arrived no later than
        ``window_s`` after ``inv_id``'s job: one that gave its preliminary answer yields its worker to
        it (to first answers within a burst, not to later arrivals, so a storm cannot starve it)."""
        now = datetime.now(UTC)
        with self.session() as s:
            mine = s.get(JobRow, inv_id)
            if mine is None:
                return False
            horizon = _utc(mine.enqueued_at) + timedelta(seconds=window_s)
            return s.scalars(select(JobRow.investigation_id).join(
                InvestigationRow, InvestigationRow.id == JobRow.investigation_id).where(
                JobRow.status == "queued", InvestigationRow.status == InvestigationStatus.QUEUED.value,
                JobRow.enqueued_at <= horizon,
                (JobRow.not_before.is_(None)) | (JobRow.not_before <= now)).limit(1)).first() is not None

    def requeue_job(self, inv_id: str, window_s: float) -> None:
        """Put a running job back in the queue after its preliminary answer, ordered ``window_s`` after
        it first arrived: behind the first answers of its burst, ahead of later arrivals. The pass does
        not count as an attempt (attempts count crashes)."""
        with self.session() as s, s.begin():
            row = s.get(JobRow, inv_id, with_for_update=True)
            if row is not None and row.status == "running":
                row.status, row.owner, row.updated_at = "queued", None, datetime.now(UTC)
                row.dispatched_at = None            # (scale-out) a new broker message is due
                row.enqueued_at = _utc(row.enqueued_at) + timedelta(seconds=window_s)
                row.attempts = max(0, row.attempts - 1)

    def next_job_at(self) -> datetime | None:
        """The earliest time a queued job may run (None when nothing is queued)."""
        with self.session() as s:
            rows = s.execute(select(func.count(), func.min(JobRow.not_before)).where(JobRow.status == "queued")
                             .group_by(JobRow.not_before.is_(None))).all()
        if not rows:
            return None
        if any(n and nb is None for n, nb in rows):
            return datetime.now(UTC)
        return min(_utc(nb) for _n, nb in rows)

    def count_investigations(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(InvestigationRow.status, func.count()).group_by(InvestigationRow.status)).all()
        return {st.value: 0 for st in InvestigationStatus} | {st: n for st, n in rows}

    # -- alerts and incidents --------------------------------------------------------------------
    def accept_alerts(self, space_id: str, alerts: list[IncomingAlert], lookback: timedelta, after: timedelta,
                      max_attempts: int = 3, now: datetime | None = None) -> list[AlertOutcome]:
        """Turn delivered alerts into incidents in ONE transaction: de-duplicate by fingerprint, group
        related alerts within the space's window, and queue one investigation per new incident. When
        this returns, every alert is durably recorded (or the call raised and nothing was written)."""
        now = now or datetime.now(UTC)
        outcomes: list[AlertOutcome] = []
        with self.session() as s, s.begin():
            srow = s.get(SpaceRow, space_id, with_for_update=True)    # serialises deliveries to one space
            if srow is None:
                raise NotFound(f"no space named {space_id!r}")
            space = AgentSpace(id=srow.id, **srow.config)
            grouping = space.alerting
            open_incs = {r.id: r for r in s.scalars(select(IncidentRow).where(
                IncidentRow.space_id == space_id, IncidentRow.status == IncidentStatus.OPEN.value)).all()}
            # the alerts of open incidents this delivery names, looked up once (a storm is one query)
            known: dict[str, IncidentAlertRow] = {}
            firing: dict[str, int] = {}     # firing alerts of the open incidents a resolution touched
            fps = sorted({a.fingerprint for a in alerts})
            for i in range(0, len(fps) if open_incs else 0, 500):
                for row in s.scalars(select(IncidentAlertRow).where(
                        IncidentAlertRow.space_id == space_id, IncidentAlertRow.fingerprint.in_(fps[i:i + 500]),
                        IncidentAlertRow.incident_id.in_(list(open_incs)))).all():
                    known.setdefault(row.fingerprint, row)
            for a in alerts:
                at = min(_utc(a.at), now + timedelta(seconds=60))
                existing = known.get(a.fingerprint)
                if existing is not None and existing.incident_id not in open_incs:
                    existing = None          # its incident resolved earlier in this delivery
                if a.status is AlertStatus.RESOLVED:
                    if existing is None:
                        outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome="ignored"))
                        continue
                    was_firing = existing.status == AlertStatus.FIRING.value
                    existing.status, existing.last_received_at = AlertStatus.RESOLVED.value, now
                    inc = open_incs[existing.incident_id]
                    if inc.id in firing:
                        firing[inc.id] -= was_firing
                    else:       # counted once per incident and delivery, then kept up to date here
                        s.flush()
                        firing[inc.id] = s.scalar(select(func.count()).select_from(IncidentAlertRow).where(
                            IncidentAlertRow.incident_id == inc.id,
                            IncidentAlertRow.status == AlertStatus.FIRING.value))
                    if not firing[inc.id]:
                        inc.status = IncidentStatus.RESOLVED.value
                        del open_incs[inc.id]
                    outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome="resolved", incident_id=inc.id,
                                                 investigation_id=inc.investigation_id))
                    continue
                if existing is not None:
                    if existing.status != AlertStatus.FIRING.value and existing.incident_id in firing:
                        firing[existing.incident_id] += 1
                    existing.receipts += 1
                    existing.status, existing.last_received_at = AlertStatus.FIRING.value, now
                    inc = open_incs[existing.incident_id]
                    inc.duplicates += 1
                    inc.last_seen = now
                    outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome="duplicate", incident_id=inc.id,
                                                 investigation_id=inc.investigation_id))
                    continue
                key = group_key(a.labels, grouping.group_by)
                horizon = now - timedelta(seconds=grouping.window_s)
                joinable = [r for r in open_incs.values() if r.group_key == key and _utc(r.last_seen) >= horizon]
                if joinable:
                    inc = max(joinable, key=lambda r: _utc(r.last_seen))
                    inc.alert_count += 1
                    inc.last_seen = now
                    outcome = "grouped"
                else:
                    alert = Alert(id=a.fingerprint, title=a.title, at=at, resource=a.resource, metric=a.metric,
                                  labels=a.labels, fingerprint=a.fingerprint)
                    wait = self.settle_until(at, space.policies.settle_s, now)
                    note = None if wait is None else JournalEntry(
                        investigation_id="", seq=1, kind=JournalKind.NOTE, source="server",
                        message=f"waiting until {wait:%H:%M:%S}Z to investigate, {space.policies.settle_s:g} s "
                                "after the onset, so that telemetry from after it has arrived",
                        data={"not_before": wait.isoformat()})
                    inv = self._add_investigation(s, space_id, Trigger(kind=TriggerKind.ALERT, alert=alert,
                                                                       text=f"{a.source} alert"),
                                                  Window.around(at, lookback, after), True, max_attempts, note, wait)
                    inc = IncidentRow(id=new_id("inc"), space_id=space_id, title=a.title[:2000],
                                      status=IncidentStatus.OPEN.value, source=a.source, group_key=key,
                                      first_seen=now, last_seen=now, alert_count=1, duplicates=0,
                                      investigation_id=inv.id)
                    s.add(inc)
                    s.flush()           # the investigation and incident rows before their alerts'
                    open_incs[inc.id] = inc
                    firing[inc.id] = 0
                    outcome = "new-incident"
                if inc.id in firing:
                    firing[inc.id] += 1
                row = IncidentAlertRow(
                    incident_id=inc.id, space_id=space_id, fingerprint=a.fingerprint, source=a.source,
                    status=AlertStatus.FIRING.value, title=a.title[:2000], starts_at=at, received_at=now,
                    last_received_at=now, receipts=1, resource=a.resource, metric=a.metric, labels=a.labels,
                    annotations=a.annotations)
                s.add(row)
                known[a.fingerprint] = row
                outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome=outcome, incident_id=inc.id,
                                             investigation_id=inc.investigation_id))
        return outcomes

    @staticmethod
    def _incident(r: IncidentRow, alerts: list[IncidentAlertRow] | None = None) -> Incident:
        return Incident(
            id=r.id, space_id=r.space_id, title=r.title, status=IncidentStatus(r.status), source=r.source,
            group_key=r.group_key, first_seen=_utc(r.first_seen), last_seen=_utc(r.last_seen),
            alert_count=r.alert_count, duplicates=r.duplicates, investigation_id=r.investigation_id,
            alerts=[IncidentAlert(fingerprint=a.fingerprint, source=a.source, status=AlertStatus(a.status),
                                  title=a.title, starts_at=_utc(a.starts_at), received_at=_utc(a.received_at),
                                  last_received_at=_utc(a.last_received_at), receipts=a.receipts,
                                  resource=a.resource, metric=a.metric, labels=a.labels or {},
                                  annotations=a.annotations or {}) for a in alerts or []])

    def list_incidents(self, space_id: str, status: IncidentStatus | None = None, limit: int = 50,
                       offset: int = 0) -> list[Incident]:
        q = select(IncidentRow).where(IncidentRow.space_id == space_id)
        if status:
            q = q.where(IncidentRow.status == status.value)
        with self.session() as s:
            rows = s.scalars(q.order_by(IncidentRow.first_seen.desc(), IncidentRow.id).limit(limit).offset(offset))
            return [self._incident(r) for r in rows.all()]

    def get_incident(self, incident_id: str, space_id: str) -> Incident:
        with self.session() as s:
            r = s.get(IncidentRow, incident_id)
            if r is None or r.space_id != space_id:
                raise NotFound(f"no incident {incident_id!r} in space {space_id!r}")
            alerts = s.scalars(select(IncidentAlertRow).where(IncidentAlertRow.incident_id == r.id)
                               .order_by(IncidentAlertRow.id)).all()
            return self._incident(r, list(alerts))

    def latest_alert(self, space_id: str, start: datetime | None = None, end: datetime | None = None) -> Alert | None:
        """The most recent alert received in a space (optionally starting inside [start, end])."""
        q = select(IncidentAlertRow).where(IncidentAlertRow.space_id == space_id)
        if start is not None:
            q = q.where(IncidentAlertRow.starts_at >= start)
        if end is not None:
            q = q.where(IncidentAlertRow.starts_at <= end)
        with self.session() as s:
            r = s.scalars(q.order_by(IncidentAlertRow.starts_at.desc(), IncidentAlertRow.id.desc()).limit(1)).first()
            if r is None:
                return None
            return Alert(id=r.fingerprint, title=r.title, at=_utc(r.starts_at), resource=r.resource, metric=r.metric,
                         labels=r.labels or {}, fingerprint=r.fingerprint)

    # -- sources and webhook integrations -------------------------------------------------------
    @staticmethod
    def _source(r: SourceRow) -> dict[str, Any]:
        last = None if r.last_check_at is None else {
            "at": _utc(r.last_check_at), "ok": bool(r.last_check_ok), "message": r.last_check_message or ""}
        return {"name": r.name, "kind": r.kind, "config": r.config or {}, "created_at": _utc(r.created_at),
                "last_check": last}

    def put_source(self, space_id: str, name: str, kind: str, config: dict[str, Any],
                   check: tuple[bool, str] | None = None) -> dict[str, Any]:
        """Create or replace a source; ``check`` (ok, message) records the check made before storing it
        (a replaced source without one loses its old check: it described another config)."""
        return self.put_sources(space_id, [(name, kind, config, check)])[0]

    def put_sources(self, space_id: str, rows: list[tuple[str, str, dict[str, Any], tuple[bool, str] | None]],
                    prune: bool = False) -> list[dict[str, Any]]:
        """Several sources in one transaction (``vigil space apply`` is all-or-nothing); with ``prune``
        the space's sources not listed are removed."""
        self.get_space(space_id)
        now = datetime.now(UTC)
        out = []
        with self.session() as s, s.begin():
            if prune:
                keep = {r[0] for r in rows}
                for old in s.scalars(select(SourceRow).where(SourceRow.space_id == space_id)).all():
                    if old.name not in keep:
                        s.delete(old)
            for name, kind, config, check in rows:
                row = s.get(SourceRow, (space_id, name))
                if row is None:
                    row = SourceRow(space_id=space_id, name=name, kind=kind, config=config, created_at=now)
                    s.add(row)
                else:
                    row.kind, row.config = kind, config
                row.last_check_at = now if check else None
                row.last_check_ok = check[0] if check else None
                row.last_check_message = check[1][:2000] if check else None
                out.append(self._source(row))
        return out

    def record_source_check(self, space_id: str, name: str, ok: bool, message: str,
                            at: datetime | None = None) -> dict[str, Any]:
        """Remember the outcome of checking a stored source (shown by ``list_sources``)."""
        with self.session() as s, s.begin():
            row = s.get(SourceRow, (space_id, name))
            if row is None:
                raise NotFound(f"no source {name!r} in space {space_id!r}")
            row.last_check_at, row.last_check_ok = at or datetime.now(UTC), ok
            row.last_check_message = message[:2000]
            return self._source(row)

    def get_source(self, space_id: str, name: str) -> dict[str, Any]:
        with self.session() as s:
            row = s.get(SourceRow, (space_id, name))
            if row is None:
                raise NotFound(f"no source {name!r} in space {space_id!r}")
            return self._source(row)

    def list_sources(self, space_id: str) -> list[dict[str, Any]]:
        """[{name, kind, config, created_at, last_check: {at, ok, message} | None}] by name."""
        with self.session() as s:
            rows = s.scalars(select(SourceRow).where(SourceRow.space_id == space_id).order_by(SourceRow.name)).all()
            return [self._source(r) for r in rows]

    def delete_source(self, space_id: str, name: str) -> None:
        with self.session() as s, s.begin():
            row = s.get(SourceRow, (space_id, name))
            if row is None:
                raise NotFound(f"no source {name!r} in space {space_id!r}")
            s.delete(row)

    def put_integration(self, space_id: str, kind: str, config: dict[str, Any], secret: str | None) -> None:
        """``secret`` is stored encrypted (``vigil.store.crypto``)."""
        self.get_space(space_id)
        if secret:
            secret = self.sealer.seal(secret)
        with self.session() as s, s.begin():
            row = s.get(IntegrationRow, (space_id, kind))
            if row is None:
                s.add(IntegrationRow(space_id=space_id, kind=kind, config=config, secret=secret,
                                     updated_at=datetime.now(UTC)))
            else:
                row.config, row.secret, row.updated_at = config, secret, datetime.now(UTC)

    def get_integration(self, space_id: str, kind: str) -> tuple[dict[str, Any], str | None] | None:
        """(config, stored secret) of a space's webhook integration, or None when not configured."""
        with self.session() as s:
            row = s.get(IntegrationRow, (space_id, kind))
            if row is None:
                return None
            config, secret = dict(row.config or {}), row.secret
        return config, (self.sealer.open(secret) if secret else secret)

    def list_integrations(self, space_id: str) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(IntegrationRow).where(IntegrationRow.space_id == space_id)
                             .order_by(IntegrationRow.kind)).all()
            return [{"kind": r.kind, "config": r.config or {}, "secret_set": bool(r.secret),
                     "updated_at": _utc(r.updated_at)} for r in rows]

    def delete_integration(self, space_id: str, kind: str) -> None:
        with self.session() as s, s.begin():
            row = s.get(IntegrationRow, (space_id, kind))
            if row is None:
                raise NotFound(f"no {kind} integration in space {space_id!r}")
            s.delete(row)
