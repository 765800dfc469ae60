"""Journal: the append-only record of every step an investigation took."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JournalKind(StrEnum):
    STARTED = "started"
    QUERY = "query"          # a source was asked something; records the query and how much came back
    ANALYSIS = "analysis"    # an analyzer ran and what it found
    CONCLUSION = "conclusion"
    WARNING = "warning"      # missing data, a source that failed, partial evidence
    NOTE = "note"            # a person's note
    ERROR = "error"


class JournalEntry(BaseModel):
    investigation_id: str
    seq: int
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC))
    kind: JournalKind
    message: str
    source: str = ""
    query: str = ""
    rows: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
