"""Read-only queries the console needs that the REST layer does not: one page of investigations by
keyset (no OFFSET scan however deep the page), their top hypothesis in one query, per-space status
counts, and the recent alert feed. Each is a bounded query over the state store's tables, so the
dashboard stays fast with thousands of investigations."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from vigil.model import ApiToken, InvestigationStatus, Role
from vigil.store.state import StateStore
from vigil.store.tables import HypothesisRow, IncidentAlertRow, IncidentRow, InvestigationRow, TokenRow


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def token_by_id(state: StateStore, token_id: str) -> ApiToken | None:
    """The live (not revoked) token with this id, or None."""
    with state.session() as s:
        r = s.get(TokenRow, token_id)
        if r is None or r.revoked_at is not None:
            return None
        return ApiToken(id=r.id, space_id=r.space_id, role=Role(r.role), name=r.name,
                        created_at=_utc(r.created_at), created_by=r.created_by)


@dataclass
class InvRow:
    id: str
    status: str
    created_at: datetime
    onset: datetime
    trigger: str
    summary: str
    top: dict[str, Any] | None = None


def encode_cursor(created_at: datetime, inv_id: str) -> str:
    raw = f"{_utc(created_at).isoformat()}|{inv_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (created_at, id) a page continues after; None for a missing or malformed cursor."""
    if not cursor or len(cursor) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, inv_id = raw.partition("|")
        return _utc(datetime.fromisoformat(at)), inv_id[:80]
    except (ValueError, UnicodeDecodeError):
        return None


def _trigger(t: dict[str, Any]) -> str:
    alert = t.get("alert") or {}
    if t.get("kind") == "alert":
        return f"alert: {alert.get('title') or alert.get('id') or '?'}"
    point = t.get("starting_point") or "manual"
    return f"{point}" + (f": {t['text']}" if t.get("text") else "")


def investigations_page(state: StateStore, space: str, limit: int = 25, after: tuple[datetime, str] | None = None,
                        status: InvestigationStatus | None = None) -> tuple[list[InvRow], str | None]:
    """Newest first, ``limit`` rows after the cursor, with each one's top hypothesis. Returns the rows
    and the cursor of the next page (None on the last page)."""
    cols = (InvestigationRow.id, InvestigationRow.status, InvestigationRow.created_at, InvestigationRow.onset,
            InvestigationRow.trigger, InvestigationRow.summary)
    q = select(*cols).where(InvestigationRow.space_id == space)
    if status is not None:
        q = q.where(InvestigationRow.status == status.value)
    if after is not None:
        at, inv_id = after
        q = q.where(or_(InvestigationRow.created_at < at,
                        and_(InvestigationRow.created_at == at, InvestigationRow.id > inv_id)))
    q = q.order_by(InvestigationRow.created_at.desc(), InvestigationRow.id).limit(limit + 1)
    with state.session() as s:
        rows = s.execute(q).all()
        more = len(rows) > limit
        rows = rows[:limit]
        out = [InvRow(id=r.id, status=r.status, created_at=_utc(r.created_at), onset=_utc(r.onset),
                      trigger=_trigger(r.trigger or {}), summary=r.summary or "") for r in rows]
        tops = top_hypotheses(s, [r.id for r in out])
    for r in out:
        r.top = tops.get(r.id)
    nxt = encode_cursor(out[-1].created_at, out[-1].id) if more and out else None
    return out, nxt


def top_hypotheses(s, inv_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not inv_ids:
        return {}
    rows = s.execute(select(HypothesisRow.investigation_id, HypothesisRow.resource, HypothesisRow.fault_kind,
                            HypothesisRow.confidence, HypothesisRow.state)
                     .where(HypothesisRow.investigation_id.in_(inv_ids), HypothesisRow.rank == 1)).all()
    return {r.investigation_id: {"resource": r.resource, "fault_kind": r.fault_kind, "confidence": r.confidence,
                                 "state": r.state} for r in rows}


def active_investigations(state: StateStore, space: str, limit: int = 10) -> list[InvRow]:
    q = (select(InvestigationRow.id, InvestigationRow.status, InvestigationRow.created_at, InvestigationRow.onset,
                InvestigationRow.trigger, InvestigationRow.summary)
         .where(InvestigationRow.space_id == space,
                InvestigationRow.status.in_([InvestigationStatus.QUEUED.value, InvestigationStatus.RUNNING.value]))
         .order_by(InvestigationRow.created_at.desc()).limit(limit))
    with state.session() as s:
        return [InvRow(id=r.id, status=r.status, created_at=_utc(r.created_at), onset=_utc(r.onset),
                       trigger=_trigger(r.trigger or {}), summary=r.summary or "") for r in s.execute(q).all()]


def status_counts(state: StateStore, space: str) -> dict[str, int]:
    with state.session() as s:
        rows = s.execute(select(InvestigationRow.status, func.count()).where(InvestigationRow.space_id == space)
                         .group_by(InvestigationRow.status)).all()
        open_incidents = s.scalar(select(func.count()).select_from(IncidentRow).where(
            IncidentRow.space_id == space, IncidentRow.status == "open")) or 0
    return {st.value: 0 for st in InvestigationStatus} | {st: n for st, n in rows} | {"open_incidents": open_incidents}


def alert_feed(state: StateStore, space: str, limit: int = 15) -> list[dict[str, Any]]:
    """The alerts most recently received in the space, newest first, with their incident."""
    q = (select(IncidentAlertRow.incident_id, IncidentAlertRow.source, IncidentAlertRow.status,
                IncidentAlertRow.title, IncidentAlertRow.starts_at, IncidentAlertRow.last_received_at,
                IncidentAlertRow.receipts, IncidentAlertRow.resource, IncidentRow.investigation_id)
         .join(IncidentRow, IncidentRow.id == IncidentAlertRow.incident_id)
         .where(IncidentAlertRow.space_id == space)
         .order_by(IncidentAlertRow.last_received_at.desc()).limit(limit))
    with state.session() as s:
        return [{"incident": r.incident_id, "source": r.source, "status": r.status, "title": r.title,
                 "starts_at": _utc(r.starts_at), "received_at": _utc(r.last_received_at), "receipts": r.receipts,
                 "resource": r.resource, "investigation": r.investigation_id} for r in s.execute(q).all()]


def latest_findings(state: StateStore, space: str, limit: int = 20) -> tuple[str | None, list[Any]]:
    """The most recent finished investigation with hypotheses (its id and hypotheses): what the
    topology's health colours say."""
    q = (select(InvestigationRow.id).where(InvestigationRow.space_id == space,
                                           InvestigationRow.status == InvestigationStatus.CONCLUDED.value)
         .order_by(InvestigationRow.finished_at.desc(), InvestigationRow.created_at.desc()).limit(limit))
    with state.session() as s:
        ids = list(s.scalars(q).all())
    for inv_id in ids:
        hyps = state.hypotheses(inv_id)
        if hyps:
            return inv_id, hyps
    return None, []
