"""What the engine is given: telemetry frames around an onset, the topology and known baselines.

Nothing here carries labels: an Observation holds what a real alert and the space's sources give."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from vigil.model import Alert, Topology
from vigil.sources.base import FRAME_COLUMNS


def empty(kind: str) -> pd.DataFrame:
    return pd.DataFrame(columns=FRAME_COLUMNS[kind])


@dataclass(frozen=True)
class Settings:
    """Every knob the engine has, one set for every dataset. Chosen from first principles (see
    docs/engine.md), not fitted per dataset."""

    metric_lookback_s: float = 3600.0     # pre-incident history for metric baselines
    event_lookback_s: float = 300.0       # pre-incident history for logs and spans (high volume)
    after_s: float = 300.0                # incident window after onset...
    min_after_samples: int = 2            # ...but at least this many samples of a series after onset
    z_cap: float = 50.0                   # robust z beyond this is "certainly changed"; cap to keep sums sane
    min_events: int = 5                   # fewer events than this in both windows: too little to say anything
    candidate_kinds: tuple[str, ...] = ("service", "database", "queue", "function", "resource", "")
    inconclusive_margin: float = 0.15     # top-1 confidence below this, or no signal: inconclusive


@dataclass
class Observation:
    onset: float
    metrics: pd.DataFrame = field(default_factory=lambda: empty("metrics"))
    logs: pd.DataFrame = field(default_factory=lambda: empty("logs"))
    spans: pd.DataFrame = field(default_factory=lambda: empty("spans"))
    changes: pd.DataFrame = field(default_factory=lambda: empty("changes"))
    topology: Topology = field(default_factory=Topology)
    baselines: list[tuple[float, float]] = field(default_factory=list)
    alert: Alert | None = None

    def in_baseline(self, ts, lookback_s: float, guard_s: float = 0.0):
        """Boolean mask: timestamps in a marked fault-free window, or in the recent pre-incident window."""
        mask = (ts >= self.onset - lookback_s) & (ts < self.onset - guard_s)
        for a, b in self.baselines:
            if b <= self.onset:
                mask |= (ts >= a) & (ts <= b)
        return mask
