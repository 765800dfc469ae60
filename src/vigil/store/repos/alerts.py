"""Incidents and the alerts they group (what deduplication and grouping, in ``vigil.services.alerts``,
read and write)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from vigil.errors import NotFound
from vigil.model import Alert, AlertStatus, Incident, IncidentAlert, IncidentStatus, IncomingAlert
from vigil.store.repos.common import Repo, new_id, utc
from vigil.store.tables import IncidentAlertRow, IncidentRow


class AlertRepo(Repo):
    # -- the rows a delivery works on (inside one transaction) -------------------------------------
    def open_incidents(self, space_id: str) -> dict[str, IncidentRow]:
        return {r.id: r for r in self.s.scalars(select(IncidentRow).where(
            IncidentRow.space_id == space_id, IncidentRow.status == IncidentStatus.OPEN.value)).all()}

    def alerts_of(self, space_id: str, fingerprints: list[str], incident_ids: list[str]) -> dict[str, IncidentAlertRow]:
        """The alerts with these fingerprints in these incidents, looked up in batches (a storm is a few
        queries, not one per alert)."""
        known: dict[str, IncidentAlertRow] = {}
        fps = sorted(set(fingerprints))
        for i in range(0, len(fps) if incident_ids else 0, 500):
            for row in self.s.scalars(select(IncidentAlertRow).where(
                    IncidentAlertRow.space_id == space_id, IncidentAlertRow.fingerprint.in_(fps[i:i + 500]),
                    IncidentAlertRow.incident_id.in_(incident_ids))).all():
                known.setdefault(row.fingerprint, row)
        return known

    def firing_count(self, incident_id: str) -> int:
        self.s.flush()
        return self.s.scalar(select(func.count()).select_from(IncidentAlertRow).where(
            IncidentAlertRow.incident_id == incident_id, IncidentAlertRow.status == AlertStatus.FIRING.value)) or 0

    def add_incident(self, space_id: str, title: str, source: str, group_key: str, now: datetime,
                     investigation_id: str | None) -> IncidentRow:
        row = IncidentRow(id=new_id("inc"), space_id=space_id, title=title[:2000], status=IncidentStatus.OPEN.value,
                          source=source, group_key=group_key, first_seen=now, last_seen=now, alert_count=1,
                          duplicates=0, investigation_id=investigation_id)
        self.s.add(row)
        return row

    def add_alert(self, incident_id: str, space_id: str, a: IncomingAlert, at: datetime,
                  now: datetime) -> IncidentAlertRow:
        row = IncidentAlertRow(
            incident_id=incident_id, space_id=space_id, fingerprint=a.fingerprint, source=a.source,
            status=AlertStatus.FIRING.value, title=a.title[:2000], starts_at=at, received_at=now,
            last_received_at=now, receipts=1, resource=a.resource, metric=a.metric, labels=a.labels,
            annotations=a.annotations)
        self.s.add(row)
        return row

    # -- reads -------------------------------------------------------------------------------------
    @staticmethod
    def _incident(r: IncidentRow, alerts: list[IncidentAlertRow] | None = None) -> Incident:
        return Incident(
            id=r.id, space_id=r.space_id, title=r.title, status=IncidentStatus(r.status), source=r.source,
            group_key=r.group_key, first_seen=utc(r.first_seen), last_seen=utc(r.last_seen),
            alert_count=r.alert_count, duplicates=r.duplicates, investigation_id=r.investigation_id,
            alerts=[IncidentAlert(fingerprint=a.fingerprint, source=a.source, status=AlertStatus(a.status),
                                  title=a.title, starts_at=utc(a.starts_at), received_at=utc(a.received_at),
                                  last_received_at=utc(a.last_received_at), receipts=a.receipts,
                                  resource=a.resource, metric=a.metric, labels=a.labels or {},
                                  annotations=a.annotations or {}) for a in alerts or []])

    def list_incidents(self, space_id: str, status: IncidentStatus | None = None, limit: int = 50,
                       offset: int = 0) -> list[Incident]:
        q = select(IncidentRow).where(IncidentRow.space_id == space_id)
        if status:
            q = q.where(IncidentRow.status == status.value)
        rows = self.s.scalars(q.order_by(IncidentRow.first_seen.desc(), IncidentRow.id).limit(limit).offset(offset))
        return [self._incident(r) for r in rows.all()]

    def get_incident(self, incident_id: str, space_id: str) -> Incident:
        r = self.s.get(IncidentRow, incident_id)
        if r is None or r.space_id != space_id:
            raise NotFound(f"no incident {incident_id!r} in space {space_id!r}")
        alerts = self.s.scalars(select(IncidentAlertRow).where(IncidentAlertRow.incident_id == r.id)
                                .order_by(IncidentAlertRow.id)).all()
        return self._incident(r, list(alerts))

    def latest_alert(self, space_id: str, start: datetime | None = None, end: datetime | None = None) -> Alert | None:
        """The most recent alert received in a space (optionally starting inside [start, end])."""
        q = select(IncidentAlertRow).where(IncidentAlertRow.space_id == space_id)
        if start is not None:
            q = q.where(IncidentAlertRow.starts_at >= start)
        if end is not None:
            q = q.where(IncidentAlertRow.starts_at <= end)
        r = self.s.scalars(q.order_by(IncidentAlertRow.starts_at.desc(), IncidentAlertRow.id.desc()).limit(1)).first()
        if r is None:
            return None
        return Alert(id=r.fingerprint, title=r.title, at=utc(r.starts_at), resource=r.resource, metric=r.metric,
                     labels=r.labels or {}, fingerprint=r.fingerprint)
