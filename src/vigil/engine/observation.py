"""What the engine is given: telemetry frames around an onset, the topology and known baselines.

Nothing here carries labels: an Observation holds what a real alert and the space's sources give."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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
    recent_window_s: float = 900.0        # the recent past a metric change must also stand out from...
    min_recent_points: int = 5            # ...when it holds this many samples
    onset_guard_s: float = 60.0           # the fault may have begun this long before the alert time
    after_s: float = 300.0                # incident window after onset...
    min_after_samples: int = 2            # ...but at least this many samples of a series after onset
    outlier_z: float = 3.0                # a baseline's own spikes beyond this raise the bar proportionally
    z_cap: float = 50.0                   # robust z beyond this is "certainly changed"; cap to keep sums sane
    min_events: int = 5                   # fewer events than this in both windows: too little to say anything
    min_baseline_points: int = 10         # a marked fault-free window must hold this many points of a series
    candidate_kinds: tuple[str, ...] = ("service", "database", "queue", "function", "resource", "")
    inconclusive_margin: float = 0.1      # top-1 ahead of the runner-up by less than this: inconclusive
    pattern_traces: int = 3000            # request patterns: traces per side (a busy window is thinned evenly)
    quick_pattern_traces: int = 500       # ...in a preliminary ranking


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
    focus: frozenset[str] | None = None   # the resources evidence-only analyzers describe (None: all)

    def marked_baseline(self, ts):
        """Boolean mask: timestamps inside a window marked fault-free. Such a window may lie before or
        (when replaying a recorded incident) after the onset; it never overlaps the incident itself."""
        mask = np.zeros(len(ts), dtype=bool)
        for a, b in self.baselines:
            mask |= (ts >= a) & (ts <= b)
        return mask

    def in_baseline(self, ts, lookback_s: float, guard_s: float = 0.0, min_marked: int = 1):
        """Boolean mask of the baseline: fault-free data when the source marks some (and it holds at
        least ``min_marked`` points), otherwise the recent pre-incident window."""
        ts = np.asarray(ts, dtype=float)
        marked = self.marked_baseline(ts)
        if marked.sum() >= min_marked:
            return marked
        return (ts >= self.onset - lookback_s) & (ts < self.onset - guard_s)
