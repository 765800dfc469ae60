"""The common currency of analyzers: a Finding says "this resource looks wrong in this way"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vigil.model import Evidence, EvidenceKind


@dataclass
class Finding:
    resource: str
    signal: EvidenceKind
    category: str            # cpu, memory, disk, network, latency, errors, traffic, host, template, operation...
    score: float             # >= 0, analyzer-specific strength (robust z or equivalent)
    title: str
    first_ts: float | None = None   # when this signal first crossed its threshold (for ordering cause/effect)
    detail: dict[str, Any] = field(default_factory=dict)

    def evidence(self) -> Evidence:
        return Evidence(kind=self.signal, resource=self.resource, title=self.title, score=round(self.score, 3),
                        detail={"category": self.category, "first_ts": self.first_ts, **self.detail})
