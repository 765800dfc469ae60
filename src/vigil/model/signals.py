"""Signals: metric points, log records, spans, change events, alerts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class MetricPoint(BaseModel):
    resource: str
    name: str
    ts: float
    value: float


class LogRecord(BaseModel):
    resource: str
    ts: float
    body: str
    level: str = ""
    trace_id: str = ""
    span_id: str = ""


class Span(BaseModel):
    trace_id: str
    span_id: str
    parent_id: str = ""
    resource: str
    operation: str
    start: float
    duration_ms: float
    error: bool = False


class ChangeKind(StrEnum):
    DEPLOY = "deploy"
    CONFIG = "config"
    SCALE = "scale"
    MANUAL = "manual"


class ChangeEvent(BaseModel):
    resource: str
    ts: float
    kind: ChangeKind
    description: str = ""
    author: str = ""


class Alert(BaseModel):
    """What a real alert gives: a time, and sometimes the alerting resource and metric."""

    id: str = ""
    title: str = ""
    at: datetime
    resource: str | None = None
    metric: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    fingerprint: str = ""
