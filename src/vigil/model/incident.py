"""Incidents, received alerts and API tokens: what the live server adds to the domain."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Role(StrEnum):
    """What a token may do inside its one space. Each role includes the ones before it."""

    VIEWER = "viewer"        # read everything in the space
    OPERATOR = "operator"    # + start/cancel investigations, judge hypotheses, send telemetry and alerts
    ADMIN = "admin"          # + tokens, sources, integrations, space settings, the audit log

    @property
    def rank(self) -> int:
        return {"viewer": 0, "operator": 1, "admin": 2}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class ApiToken(BaseModel):
    """A token's record. The secret itself is shown once at creation and stored only as a hash."""

    id: str
    space_id: str
    role: Role
    name: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    created_by: str = ""
    revoked_at: datetime | None = None


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class IncomingAlert(BaseModel):
    """One alert as a trigger delivered it, normalised across Alertmanager, Grafana, PagerDuty,
    CloudWatch/SNS and the generic webhook."""

    source: str
    fingerprint: str = Field(min_length=1, max_length=200)
    status: AlertStatus = AlertStatus.FIRING
    title: str = ""
    at: datetime
    resource: str | None = None
    metric: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentAlert(BaseModel):
    fingerprint: str
    source: str
    status: AlertStatus
    title: str = ""
    starts_at: datetime
    received_at: datetime
    last_received_at: datetime
    receipts: int = 1
    resource: str | None = None
    metric: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Incident(BaseModel):
    """Related alerts of one space grouped within a window; one investigation per incident."""

    id: str
    space_id: str
    title: str = ""
    status: IncidentStatus = IncidentStatus.OPEN
    source: str = ""
    group_key: str = ""
    first_seen: datetime
    last_seen: datetime
    alert_count: int = 0
    duplicates: int = 0
    investigation_id: str | None = None
    alerts: list[IncidentAlert] = Field(default_factory=list)


class AlertOutcome(BaseModel):
    """What happened to one delivered alert."""

    fingerprint: str
    outcome: str              # new-incident | grouped | duplicate | resolved | ignored
    incident_id: str | None = None
    investigation_id: str | None = None
