"""Investigation: a trigger, a time window and a status lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from vigil.model.signals import Alert


class InvestigationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CONCLUDED = "concluded"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (self.CONCLUDED, self.INCONCLUSIVE, self.FAILED, self.CANCELLED)


_ALLOWED = {
    InvestigationStatus.QUEUED: {InvestigationStatus.RUNNING, InvestigationStatus.CANCELLED},
    InvestigationStatus.RUNNING: {
        InvestigationStatus.CONCLUDED, InvestigationStatus.INCONCLUSIVE,
        InvestigationStatus.FAILED, InvestigationStatus.CANCELLED, InvestigationStatus.QUEUED,
    },
}


def can_transition(old: InvestigationStatus, new: InvestigationStatus) -> bool:
    return new in _ALLOWED.get(old, set())


class TriggerKind(StrEnum):
    ALERT = "alert"
    MANUAL = "manual"


class StartingPoint(StrEnum):
    LATEST_ALARM = "latest-alarm"
    HIGH_CPU = "high-cpu"
    ERROR_RATE_SPIKE = "error-rate-spike"
    FREE_TEXT = "free-text"


class Steering(BaseModel):
    """How a person steered a rerun: the services to focus on (and what they depend on) or to leave out."""

    focus: list[str] = Field(default_factory=list, max_length=20)
    exclude: list[str] = Field(default_factory=list, max_length=20)
    parent: str = Field(default="", description="The investigation this one reruns.")
    by: str = ""


class Trigger(BaseModel):
    kind: TriggerKind
    alert: Alert | None = None
    starting_point: StartingPoint | None = None
    text: str = ""
    steering: Steering | None = None


class Window(BaseModel):
    """The incident window: ``start`` is where the analysis looks for change, ``onset`` the suspected start."""

    start: datetime
    end: datetime
    onset: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if not (self.start <= self.onset <= self.end):
            raise ValueError("window must satisfy start <= onset <= end")
        return self

    @classmethod
    def around(cls, onset: datetime, before: timedelta, after: timedelta) -> Window:
        return cls(start=onset - before, end=onset + after, onset=onset)


class Investigation(BaseModel):
    id: str
    space_id: str
    trigger: Trigger
    window: Window
    status: InvestigationStatus = InvestigationStatus.QUEUED
    summary: str = ""
    error: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
