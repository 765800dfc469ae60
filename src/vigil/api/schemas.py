"""Request and response bodies of the API (the domain types are used as they are elsewhere)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vigil.model import AlertGrouping, ApiToken, Investigation, Policies, Role, StartingPoint


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpacePatch(Strict):
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    services: list[str] | None = Field(default=None, max_length=1000)
    policies: Policies | None = None
    alerting: AlertGrouping | None = None


class TokenCreate(Strict):
    role: Role
    name: str = Field(default="", max_length=200)


class TokenCreated(ApiToken):
    token: str = Field(description="The secret. Shown once: only its hash is stored.")


class OtlpSourceConfig(Strict):
    resource_attribute: str = Field(default="service.name", min_length=1, max_length=200,
                                    pattern=r"^[A-Za-z0-9_.\-/]+$",
                                    description="The OTLP resource attribute that names a resource.")


class SourceIn(Strict):
    kind: str = Field(default="otlp", pattern=r"^[a-z0-9_-]{1,30}$",
                      description="otlp, or a connector kind: prometheus, cloudwatch, loki, tempo, jaeger, "
                                  "opensearch, datadog, kubernetes, git, argocd, mcp.")
    config: dict[str, Any] = Field(default_factory=dict, description=(
        "The kind's settings (see docs/connectors.md). Credentials are references only: "
        "{\"env\": \"NAME\"} or {\"file\": \"/path\"}, read by the server, never stored nor returned."))


class SourceCheck(BaseModel):
    at: datetime
    ok: bool
    message: str


class SourceCheckOut(SourceCheck):
    name: str
    kind: str


class SourceOut(BaseModel):
    name: str
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    counts: dict[str, int] | None = None
    extent: list[float] | None = None
    last_check: SourceCheck | None = Field(default=None, description="The last check of its backend.")
    check: str | None = Field(default=None, description="On registration: what answered the check.")


class IntegrationConfig(Strict):
    topic_arns: list[str] = Field(default_factory=list, max_length=100,
                                  description="sns: the topics whose messages the space accepts.")
    auto_confirm: bool = Field(default=False, description="sns: confirm subscriptions by visiting SubscribeURL.")
    header: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9-]+$",
                               description="grafana: the signature header (default X-Grafana-Alerting-Signature).")
    timestamp_header: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9-]+$",
                                         description="grafana: the timestamp header, when configured in Grafana.")
    services: dict[str, str] = Field(default_factory=dict, max_length=1000, description=(
        "github/gitlab: repository (owner/repo, or owner/repo:environment) -> the service its deployments "
        "change; default the repository's name."))
    workflows: list[str] | None = Field(default=None, max_length=100, description=(
        "github: workflow name or path globs whose completed runs are deployments "
        "(default *deploy*, *release*, *rollout*)."))


class IntegrationIn(Strict):
    secret: str | None = Field(default=None, min_length=16, max_length=500,
                               description="The shared secret (write-only: never returned).")
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]{0,99}$",
                                   description="Read the secret from this environment variable of the server.")
    config: IntegrationConfig = Field(default_factory=IntegrationConfig)


class IntegrationOut(BaseModel):
    kind: str
    config: dict[str, Any]
    secret_set: bool
    updated_at: datetime | None = None


class ManualStart(Strict):
    starting_point: StartingPoint
    start: datetime | None = Field(default=None, description="Window start (default: an hour before its end).")
    end: datetime | None = Field(default=None, description="Window end (default: now).")
    at: datetime | None = Field(default=None, description="free-text only: the incident time.")
    text: str = Field(default="", max_length=2000)


class JobView(BaseModel):
    status: str
    attempts: int
    max_attempts: int
    last_error: str = ""


class InvestigationView(Investigation):
    job: JobView | None = None


class NoteIn(Strict):
    note: str = Field(min_length=1, max_length=10_000)


class JudgeIn(Strict):
    note: str | None = Field(default=None, max_length=10_000)


class AlertsAccepted(BaseModel):
    accepted: int
    outcomes: list[dict[str, Any]]


class AuditEntry(BaseModel):
    ts: datetime
    actor: str
    action: str
    space_id: str | None
    target: str
    detail: dict[str, Any]
