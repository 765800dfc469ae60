"""SQLAlchemy tables for Vigil's state. Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SpaceRow(Base):
    __tablename__ = "spaces"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InvestigationRow(Base):
    __tablename__ = "investigations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    onset: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JournalRow(Base):
    __tablename__ = "journal"
    __table_args__ = (UniqueConstraint("investigation_id", "seq", name="uq_journal_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    investigation_id: Mapped[str] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200), default="")
    query: Mapped[str] = mapped_column(Text, default="")
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    step: Mapped[str | None] = mapped_column(String(40), nullable=True)    # a run's step: written once


class ConsoleSessionRow(Base):
    """A console session shared by every ``vigil serve`` replica (scale-out mode), keyed by a hash."""

    __tablename__ = "console_sessions"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    tokens: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float, index=True)


class HypothesisRow(Base):
    __tablename__ = "hypotheses"
    __table_args__ = (Index("ix_hypotheses_inv_rank", "investigation_id", "rank"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    investigation_id: Mapped[str] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    resource: Mapped[str] = mapped_column(String(300))
    fault_kind: Mapped[str] = mapped_column(String(30))
    confidence: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    why: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)
    path: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(20), default="proposed")
    note: Mapped[str] = mapped_column(Text, default="")


class AuditRow(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    space_id: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# -- the live server (migration 0002) -------------------------------------------------------------
class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200), default="")
    hash: Mapped[str] = mapped_column(String(64), unique=True)      # sha256 hex of the secret; never the secret
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobRow(Base):
    """The durable investigation queue: one row per investigation to run."""

    __tablename__ = "jobs"
    investigation_id: Mapped[str] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"),
                                                  primary_key=True)
    space_id: Mapped[str] = mapped_column(String(63), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)   # queued | running | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))   # a worker's lease is renewed here
    last_error: Mapped[str] = mapped_column(Text, default="")
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # to the broker
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class IncidentRow(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_space_status", "space_id", "status"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(40), default="")
    group_key: Mapped[str] = mapped_column(String(300), default="")
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    investigation_id: Mapped[str | None] = mapped_column(
        ForeignKey("investigations.id", ondelete="SET NULL"), nullable=True)


class IncidentAlertRow(Base):
    __tablename__ = "incident_alerts"
    __table_args__ = (UniqueConstraint("incident_id", "fingerprint", name="uq_incident_alert_fp"),
                      Index("ix_incident_alerts_space_fp", "space_id", "fingerprint"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    space_id: Mapped[str] = mapped_column(String(63))
    fingerprint: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    receipts: Mapped[int] = mapped_column(Integer, default=1)
    resource: Mapped[str | None] = mapped_column(String(300), nullable=True)
    metric: Mapped[str | None] = mapped_column(String(300), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SourceRow(Base):
    __tablename__ = "sources"
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the last time someone checked that the backend answers (registration, `.../check`, `space apply`)
    last_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_check_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_check_message: Mapped[str | None] = mapped_column(Text, nullable=True)


class IntegrationRow(Base):
    """A webhook trigger's settings for a space. ``secret`` is needed in clear to check HMACs; it is
    never returned by the API nor logged. ``config.secret_env`` names an environment variable instead."""

    __tablename__ = "integrations"
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- respond and prevent (migration 0004) ---------------------------------------------------------
class RespondSettingRow(Base):
    """A space's settings for one action kind (area ``action``) or notifier (area ``notify``): whether it
    is on and its config. Credentials in ``config`` are references (``{env: NAME}`` / ``{file: PATH}``)."""

    __tablename__ = "respond_settings"
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    area: Mapped[str] = mapped_column(String(20), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ActionRow(Base):
    """A directed action: proposed, approved (a single-use token was minted), run once, verified."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_space_inv", "space_id", "investigation_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    investigation_id: Mapped[str] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"))
    hypothesis_id: Mapped[str] = mapped_column(String(40), default="")
    kind: Mapped[str] = mapped_column(String(40))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    args_hash: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))     # proposed|approved|queued|running|succeeded|failed
    proposed_by: Mapped[str] = mapped_column(String(200), default="")
    approved_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    verify: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recovery: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")


class ApprovalRow(Base):
    """An approval's single-use token (stored as a hash), bound to one action, its kind, the hash of its
    exact arguments and its investigation; consumed atomically."""

    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    action_id: Mapped[str] = mapped_column(ForeignKey("actions.id", ondelete="CASCADE"), index=True)
    space_id: Mapped[str] = mapped_column(String(63))
    investigation_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    args_hash: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    approved_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    used_by: Mapped[str] = mapped_column(String(200), default="")


class OutboxRow(Base):
    """An outgoing update (Slack, ticket note, webhook) waiting to be delivered: retried with backoff
    until it is sent or dead; it survives restarts and receiver outages."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    investigation_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    notifier: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(20))      # pending | sent | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ThreadRow(Base):
    """Where an investigation's updates go in one notifier: a Slack channel and thread, a PagerDuty
    incident, a Jira issue, a GitHub issue, a ServiceNow incident."""

    __tablename__ = "threads"
    investigation_id: Mapped[str] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"),
                                                  primary_key=True)
    notifier: Mapped[str] = mapped_column(String(40), primary_key=True)
    space_id: Mapped[str] = mapped_column(String(63), index=True)
    ref: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BacklogRow(Base):
    """A prevention item found across a space's investigations, with the status people give it."""

    __tablename__ = "backlog"
    __table_args__ = (UniqueConstraint("space_id", "key", name="uq_backlog_key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[float] = mapped_column(Float, default=0.0)
    likelihood: Mapped[float] = mapped_column(Float, default=0.0)
    detectability: Mapped[float] = mapped_column(Float, default=0.0)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(20), default="open")
    note: Mapped[str] = mapped_column(Text, default="")
    investigations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SkillRow(Base):
    """A Markdown runbook attached to a space, matched to investigations by service, fault kind and alert
    labels; ``always`` makes it a standing instruction for every investigation."""

    __tablename__ = "skills"
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    match: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    always: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
