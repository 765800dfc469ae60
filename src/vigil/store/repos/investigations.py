"""Investigations, their append-only journal and their ranked hypotheses (one aggregate: a journal entry
or a hypothesis never outlives its investigation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from vigil.errors import InputError, NotFound
from vigil.model import (
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
from vigil.store.repos.common import Repo, new_id, utc
from vigil.store.tables import HypothesisRow, InvestigationRow, JobRow, JournalRow


class InvestigationRepo(Repo):
    # -- investigations ------------------------------------------------------------------------
    @staticmethod
    def _inv(row: InvestigationRow) -> Investigation:
        return Investigation(
            id=row.id, space_id=row.space_id, trigger=Trigger.model_validate(row.trigger),
            window=Window(start=utc(row.window_start), end=utc(row.window_end), onset=utc(row.onset)),
            status=InvestigationStatus(row.status), summary=row.summary, error=row.error,
            created_at=utc(row.created_at), started_at=utc(row.started_at), finished_at=utc(row.finished_at))

    def add(self, space_id: str, trigger: Trigger, window: Window, note: JournalEntry | None = None) -> Investigation:
        """A queued investigation, with ``note`` as its first journal entry."""
        inv = Investigation(id=new_id("inv"), space_id=space_id, trigger=trigger, window=window)
        self.s.add(InvestigationRow(
            id=inv.id, space_id=space_id, trigger=trigger.model_dump(mode="json"),
            window_start=window.start, window_end=window.end, onset=window.onset,
            status=inv.status.value, summary="", error="", created_at=inv.created_at))
        if note is not None:
            self.s.flush()
            self.s.add(JournalRow(investigation_id=inv.id, seq=1, ts=note.ts, kind=note.kind.value,
                                  message=note.message, source=note.source, query=note.query, rows=note.rows,
                                  data=note.model_dump(mode="json")["data"]))
        return inv

    def get(self, inv_id: str, space_id: str | None = None, *, lock: bool = False) -> Investigation:
        """With ``lock`` the row is read afresh and stays locked until the transaction ends."""
        row = self.s.get(InvestigationRow, inv_id, with_for_update=lock or None, populate_existing=lock)
        if row is None or (space_id is not None and row.space_id != space_id):
            raise NotFound(f"no investigation {inv_id!r}" + (f" in space {space_id!r}" if space_id else ""))
        return self._inv(row)

    def list(self, space_id: str | None = None, status: InvestigationStatus | None = None, limit: int = 50,
             offset: int = 0) -> list[Investigation]:
        q = select(InvestigationRow).order_by(InvestigationRow.created_at.desc(), InvestigationRow.id)
        if space_id:
            q = q.where(InvestigationRow.space_id == space_id)
        if status:
            q = q.where(InvestigationRow.status == status.value)
        return [self._inv(r) for r in self.s.scalars(q.limit(limit).offset(offset)).all()]

    def set_status(self, inv_id: str, status: InvestigationStatus, summary: str | None = None,
                   error: str | None = None, *, finish_job: bool = False) -> Investigation:
        """Move an investigation along its lifecycle; with ``finish_job`` a final status also marks its
        queued job done."""
        row = self.s.get(InvestigationRow, inv_id, with_for_update=True)
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
            job = self.s.get(JobRow, inv_id)
            if job is not None:
                job.status, job.owner, job.updated_at = "done", None, now
                if error:
                    job.last_error = error[:2000]
        return self._inv(row)

    def counts(self) -> dict[str, int]:
        rows = self.s.execute(select(InvestigationRow.status, func.count()).group_by(InvestigationRow.status)).all()
        return {st.value: 0 for st in InvestigationStatus} | {st: n for st, n in rows}

    # -- journal (append-only: there is no update or delete) ------------------------------------
    @staticmethod
    def _entry(r: JournalRow) -> JournalEntry:
        return JournalEntry(investigation_id=r.investigation_id, seq=r.seq, ts=utc(r.ts), kind=JournalKind(r.kind),
                            message=r.message, source=r.source, query=r.query, rows=r.rows, data=r.data or {})

    def append(self, inv_id: str, kind: JournalKind, message: str, *, source: str = "", query: str = "",
               rows: int | None = None, data: dict[str, Any] | None = None, step: str | None = None) -> JournalEntry:
        """Append an entry. ``step`` names a run's step (scale-out workers): an entry of the same kind
        already written for that step is returned instead, so a redelivered run writes each step once."""
        # lock the investigation row: appends to one journal are serialised (PostgreSQL)
        if self.s.get(InvestigationRow, inv_id, with_for_update=True) is None:
            raise NotFound(f"no investigation {inv_id!r}")
        if step is not None:
            done = self.s.scalars(select(JournalRow).where(JournalRow.investigation_id == inv_id,
                                                           JournalRow.step == step)).first()
            if done is not None:
                if done.kind == kind.value:
                    return self._entry(done)
                step = None     # the run went another way this time: a new entry
        seq = (self.s.scalar(select(func.max(JournalRow.seq)).where(JournalRow.investigation_id == inv_id))
               or 0) + 1
        entry = JournalEntry(investigation_id=inv_id, seq=seq, kind=kind, message=message, source=source,
                             query=query, rows=rows, data=data or {})
        self.s.add(JournalRow(investigation_id=inv_id, seq=seq, ts=entry.ts, kind=kind.value, message=message,
                              source=source, query=query, rows=rows, data=entry.model_dump(mode="json")["data"],
                              step=step))
        self.s.flush()
        return entry

    def journal(self, inv_id: str, after_seq: int = 0) -> list[JournalEntry]:
        rows = self.s.scalars(select(JournalRow).where(JournalRow.investigation_id == inv_id,
                                                       JournalRow.seq > after_seq).order_by(JournalRow.seq)).all()
        return [self._entry(r) for r in rows]

    def steps(self, inv_id: str) -> list[str]:
        """The step keys written for an investigation (scale-out workers), in journal order."""
        return list(self.s.scalars(select(JournalRow.step).where(JournalRow.investigation_id == inv_id,
                                                                 JournalRow.step.is_not(None))
                                   .order_by(JournalRow.seq)).all())

    # -- hypotheses ----------------------------------------------------------------------------
    @staticmethod
    def _hyp(r: HypothesisRow) -> Hypothesis:
        return Hypothesis(id=r.id, investigation_id=r.investigation_id, rank=r.rank, resource=r.resource,
                          fault_kind=r.fault_kind, confidence=r.confidence, score=r.score, why=r.why,
                          evidence=r.evidence, path=r.path, state=r.state, note=r.note)

    def replace_hypotheses(self, inv_id: str, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        """Store the ranked hypotheses of an investigation run (a rerun replaces the proposals)."""
        out = []
        for row in self.s.scalars(select(HypothesisRow).where(HypothesisRow.investigation_id == inv_id)).all():
            self.s.delete(row)
        for h in hypotheses:
            h = h.model_copy(update={"id": h.id or new_id("hyp"), "investigation_id": inv_id})
            dumped = h.model_dump(mode="json")
            self.s.add(HypothesisRow(id=h.id, investigation_id=inv_id, rank=h.rank, resource=h.resource,
                                     fault_kind=h.fault_kind.value, confidence=h.confidence, score=h.score,
                                     why=h.why, evidence=dumped["evidence"], path=dumped["path"],
                                     state=h.state.value, note=h.note))
            out.append(h)
        return out

    def hypotheses(self, inv_id: str) -> list[Hypothesis]:
        rows = self.s.scalars(select(HypothesisRow).where(HypothesisRow.investigation_id == inv_id)
                              .order_by(HypothesisRow.rank)).all()
        return [self._hyp(r) for r in rows]

    def hypotheses_signature(self, inv_id: str) -> list[tuple]:
        """(id, state, note, confidence) of each hypothesis by rank: what a live stream compares to know
        whether to read the hypotheses (and their evidence, which can be large) again."""
        return [tuple(r) for r in self.s.execute(
            select(HypothesisRow.id, HypothesisRow.state, HypothesisRow.note, HypothesisRow.confidence)
            .where(HypothesisRow.investigation_id == inv_id).order_by(HypothesisRow.rank)).all()]

    def judge(self, hyp_id: str, state: HypothesisState | None = None, note: str | None = None,
              space_id: str | None = None) -> Hypothesis:
        row = self.s.get(HypothesisRow, hyp_id)
        if row is not None and space_id is not None:
            inv = self.s.get(InvestigationRow, row.investigation_id)
            if inv is None or inv.space_id != space_id:
                row = None
        if row is None:
            raise NotFound(f"no hypothesis {hyp_id!r}")
        if state is not None:
            row.state = state.value
        if note is not None:
            row.note = note
        return self._hyp(row)
