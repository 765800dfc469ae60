"""Read-only queries the console needs that the REST layer does not: one page of investigations by
keyset (no OFFSET scan however deep the page), their top hypothesis in one query, per-space status
counts, and the recent alert feed. Each is a bounded query, so the dashboard stays fast with thousands
of investigations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from vigil.model import InvestigationStatus
from vigil.store.repos.common import Repo, utc
from vigil.store.tables import HypothesisRow, IncidentAlertRow, IncidentRow, InvestigationRow

_COLS = (InvestigationRow.id, InvestigationRow.status, InvestigationRow.created_at, InvestigationRow.onset,
         InvestigationRow.trigger, InvestigationRow.summary)


def _row(r) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "created_at": utc(r.created_at), "onset": utc(r.onset),
            "trigger": r.trigger or {}, "summary": r.summary or ""}


class OverviewRepo(Repo):
    def investigations_page(self, space: str, limit: int, after: tuple[datetime, str] | None = None,
                            status: InvestigationStatus | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, ``limit`` rows after the (created_at, id) cursor; and whether more follow."""
        q = select(*_COLS).where(InvestigationRow.space_id == space)
        if status is not None:
            q = q.where(InvestigationRow.status == status.value)
        if after is not None:
            at, inv_id = after
            q = q.where(or_(InvestigationRow.created_at < at,
                            and_(InvestigationRow.created_at == at, InvestigationRow.id > inv_id)))
        rows = self.s.execute(q.order_by(InvestigationRow.created_at.desc(), InvestigationRow.id)
                              .limit(limit + 1)).all()
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    def top_hypotheses(self, inv_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not inv_ids:
            return {}
        rows = self.s.execute(select(HypothesisRow.investigation_id, HypothesisRow.resource, HypothesisRow.fault_kind,
                                     HypothesisRow.confidence, HypothesisRow.state)
                              .where(HypothesisRow.investigation_id.in_(inv_ids), HypothesisRow.rank == 1)).all()
        return {r.investigation_id: {"resource": r.resource, "fault_kind": r.fault_kind, "confidence": r.confidence,
                                     "state": r.state} for r in rows}

    def active(self, space: str, limit: int = 10) -> list[dict[str, Any]]:
        q = (select(*_COLS)
             .where(InvestigationRow.space_id == space,
                    InvestigationRow.status.in_([InvestigationStatus.QUEUED.value, InvestigationStatus.RUNNING.value]))
             .order_by(InvestigationRow.created_at.desc()).limit(limit))
        return [_row(r) for r in self.s.execute(q).all()]

    def status_counts(self, space: str) -> dict[str, int]:
        rows = self.s.execute(select(InvestigationRow.status, func.count()).where(InvestigationRow.space_id == space)
                              .group_by(InvestigationRow.status)).all()
        open_incidents = self.s.scalar(select(func.count()).select_from(IncidentRow).where(
            IncidentRow.space_id == space, IncidentRow.status == "open")) or 0
        return ({st.value: 0 for st in InvestigationStatus} | {st: n for st, n in rows}
                | {"open_incidents": open_incidents})

    def alert_feed(self, space: str, limit: int = 15) -> list[dict[str, Any]]:
        """The alerts most recently received in the space, newest first, with their incident."""
        q = (select(IncidentAlertRow.incident_id, IncidentAlertRow.source, IncidentAlertRow.status,
                    IncidentAlertRow.title, IncidentAlertRow.starts_at, IncidentAlertRow.last_received_at,
                    IncidentAlertRow.receipts, IncidentAlertRow.resource, IncidentRow.investigation_id)
             .join(IncidentRow, IncidentRow.id == IncidentAlertRow.incident_id)
             .where(IncidentAlertRow.space_id == space)
             .order_by(IncidentAlertRow.last_received_at.desc()).limit(limit))
        return [{"incident": r.incident_id, "source": r.source, "status": r.status, "title": r.title,
                 "starts_at": utc(r.starts_at), "received_at": utc(r.last_received_at), "receipts": r.receipts,
                 "resource": r.resource, "investigation": r.investigation_id} for r in self.s.execute(q).all()]

    def concluded_ids(self, space: str, limit: int = 20) -> list[str]:
        """The space's most recently finished concluded investigations."""
        q = (select(InvestigationRow.id).where(InvestigationRow.space_id == space,
                                               InvestigationRow.status == InvestigationStatus.CONCLUDED.value)
             .order_by(InvestigationRow.finished_at.desc(), InvestigationRow.created_at.desc()).limit(limit))
        return list(self.s.scalars(q).all())
