"""Evidence: a pointer to concrete data that supports a hypothesis."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class EvidenceKind(StrEnum):
    METRIC = "metric"        # a metric segment: baseline vs incident statistics, the series around onset
    LOG = "log"              # a log template: counts before/after, sample lines
    TRACE = "trace"          # per-service latency/error attribution, trace exemplars
    CHANGE = "change"        # a deploy, config change or manual action near the onset
    VIEW = "view"            # what people look at, saved with the investigation: a chart, log templates, an
                             # exemplar trace, the changes in the window, the neighbourhood on the topology


class Evidence(BaseModel):
    kind: EvidenceKind
    resource: str
    title: str
    score: float = 0.0
    detail: dict[str, Any] = Field(default_factory=dict)
