"""Agent Space: what Vigil may see and touch for one application or team."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel, Field, field_validator

_SPACE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class Policies(BaseModel):
    """What Vigil may do inside a space. Read-only unless a person opted in."""

    read_only: bool = True
    allow_mutations: bool = False
    require_approval: bool = True
    investigation_budget_s: float = Field(default=120.0, gt=0)
    settle_s: float = Field(default=15.0, ge=0, le=3600, description=(
        "An investigation starts no earlier than this long after the incident's onset: exporters batch "
        "and the analysis needs telemetry from after the onset."))


class AlertGrouping(BaseModel):
    """How alerts of a space become incidents: an alert whose fingerprint is already in an open
    incident is a duplicate; a new one joins the open incident with the same group key if that
    incident saw an alert within ``window_s``; otherwise it opens a new incident (and investigation).
    ``group_by`` lists the alert labels that make the key; empty groups the whole space."""

    window_s: float = Field(default=600.0, ge=0, le=7 * 86400)
    group_by: list[str] = Field(default_factory=list, max_length=20)


class AgentSpace(BaseModel):
    id: str
    name: str = ""
    description: str = ""
    services: list[str] = Field(default_factory=list, description="Resources in scope; empty means all seen.")
    sources: list[str] = Field(default_factory=list, description="Names of data sources bound to this space.")
    integrations: list[str] = Field(default_factory=list)
    policies: Policies = Field(default_factory=Policies)
    alerting: AlertGrouping = Field(default_factory=AlertGrouping)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("id")
    @classmethod
    def _valid_id(cls, v: str) -> str:
        if not _SPACE_ID.match(v):
            raise ValueError("space id must be 1-63 chars of a-z, 0-9, '_', '.', '-' and start with a letter or digit")
        return v

    def in_scope(self, resource: str) -> bool:
        return not self.services or resource in self.services
