"""State store: spaces, investigations, the append-only journal, hypotheses and the audit log.

SQLite file by default, PostgreSQL when ``VIGIL_DATABASE_URL`` points at one. The schema is
owned by Alembic migrations, applied on open."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
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
    Hypothesis,
    HypothesisState,
    Investigation,
    InvestigationStatus,
    JournalEntry,
    JournalKind,
    Trigger,
    Window,
)
from vigil.model.investigation import can_transition
from vigil.store.tables import AuditRow, HypothesisRow, InvestigationRow, JournalRow, SpaceRow

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
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record):  # noqa: ANN001
            cur = dbapi_con.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()
    return engine


class StateStore:
    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        migrate(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    # -- spaces --------------------------------------------------------------------------------
    def put_space(self, space: AgentSpace) -> AgentSpace:
        config = space.model_dump(mode="json", include={"services", "sources", "integrations", "policies"})
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
    def create_investigation(self, space_id: str, trigger: Trigger, window: Window) -> Investigation:
        self.get_space(space_id)
        inv = Investigation(id=new_id("inv"), space_id=space_id, trigger=trigger, window=window)
        with self.session() as s, s.begin():
            s.add(InvestigationRow(
                id=inv.id, space_id=space_id, trigger=trigger.model_dump(mode="json"),
                window_start=window.start, window_end=window.end, onset=window.onset,
                status=inv.status.value, summary="", error="", created_at=inv.created_at))
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
                   error: str | None = None) -> Investigation:
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
            return self._inv(row)

    # -- journal (append-only: there is no update or delete) ------------------------------------
    def append_journal(self, inv_id: str, kind: JournalKind, message: str, *, source: str = "", query: str = "",
                       rows: int | None = None, data: dict[str, Any] | None = None) -> JournalEntry:
        for _attempt in range(5):
            try:
                with self.session() as s, s.begin():
                    # lock the investigation row: appends to one journal are serialised (PostgreSQL)
                    if s.get(InvestigationRow, inv_id, with_for_update=True) is None:
                        raise NotFound(f"no investigation {inv_id!r}")
                    seq = (s.scalar(select(func.max(JournalRow.seq)).where(JournalRow.investigation_id == inv_id))
                           or 0) + 1
                    entry = JournalEntry(investigation_id=inv_id, seq=seq, kind=kind, message=message,
                                         source=source, query=query, rows=rows, data=data or {})
                    s.add(JournalRow(investigation_id=inv_id, seq=seq, ts=entry.ts, kind=kind.value,
                                     message=message, source=source, query=query, rows=rows,
                                     data=entry.model_dump(mode="json")["data"]))
                return entry
            except IntegrityError:
                continue  # a concurrent writer took this seq; take the next one
        raise RuntimeError(f"could not append to the journal of {inv_id}")

    def journal(self, inv_id: str, after_seq: int = 0) -> list[JournalEntry]:
        with self.session() as s:
            rows = s.scalars(select(JournalRow).where(JournalRow.investigation_id == inv_id,
                                                      JournalRow.seq > after_seq).order_by(JournalRow.seq)).all()
            return [JournalEntry(investigation_id=r.investigation_id, seq=r.seq, ts=_utc(r.ts),
                                 kind=JournalKind(r.kind), message=r.message, source=r.source, query=r.query,
                                 rows=r.rows, data=r.data or {}) for r in rows]

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
