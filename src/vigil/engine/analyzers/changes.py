"""Change evidence: deploys, config changes, scaling and manual actions shortly before the onset."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.engine.findings import ChangeEvent, Finding
from vigil.engine.prepared import Prepared
from vigil.model import EvidenceKind, FaultKind


@dataclass(frozen=True)
class Config:
    horizon_s: float = 1800.0     # a change more than 30 minutes before the onset is an unlikely trigger
    after_s: float = 60.0         # a change up to a minute after the alert may still be the trigger
    top_score: float = 10.0       # a change right at the onset


class Changes:
    name = "changes"
    family = "changes"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["changes"] else "no change events (deploys, config changes) in the window"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        out = []
        for row in p.changes.itertuples(index=False):
            lead = p.onset - float(row.ts)
            if -config.after_s <= lead <= config.horizon_s:
                # closer to the onset is more suspicious
                score = config.top_score * (1.0 - max(lead, 0.0) / config.horizon_s)
                out.append(Finding(str(row.resource), "changes", "change", EvidenceKind.CHANGE, score,
                                   f"{row.kind} {int(lead)} s before onset: {row.description}",
                                   fault_kind=FaultKind.CHANGE, first_ts=float(row.ts),
                                   detail=ChangeEvent(kind=str(row.kind), description=str(row.description),
                                                      author=str(row.author), lead_s=lead)))
        return out
