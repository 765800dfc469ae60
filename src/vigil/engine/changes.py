"""Change evidence: deploys, config changes, scaling and manual actions shortly before the onset."""

from __future__ import annotations

from vigil.engine.findings import Finding
from vigil.engine.observation import Observation, Settings
from vigil.model import EvidenceKind

CHANGE_HORIZON_S = 1800.0   # a change more than 30 minutes before the onset is an unlikely trigger


def analyze_changes(obs: Observation, s: Settings) -> list[Finding]:
    ch = obs.changes
    if ch.empty:
        return []
    out = []
    for row in ch.itertuples(index=False):
        lead = obs.onset - float(row.ts)
        if -60.0 <= lead <= CHANGE_HORIZON_S:
            # closer to the onset is more suspicious; a change up to a minute after onset still counts
            score = 10.0 * (1.0 - max(lead, 0.0) / CHANGE_HORIZON_S)
            out.append(Finding(str(row.resource), EvidenceKind.CHANGE, "change", score,
                               f"{row.kind} {int(lead)} s before onset: {row.description}",
                               first_ts=float(row.ts),
                               detail={"kind": str(row.kind), "description": str(row.description),
                                       "author": str(row.author), "lead_s": lead}))
    return out
