"""What the engine is given: telemetry frames around an onset, the topology, the windows a source marks
as fault-free, and the alert.

Nothing here carries labels: an Observation holds what a real alert and the space's sources give."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from vigil.frames import empty
from vigil.model import Alert, Topology


@dataclass
class Observation:
    onset: float
    metrics: pd.DataFrame = field(default_factory=lambda: empty("metrics"))
    logs: pd.DataFrame = field(default_factory=lambda: empty("logs"))
    spans: pd.DataFrame = field(default_factory=lambda: empty("spans"))
    changes: pd.DataFrame = field(default_factory=lambda: empty("changes"))
    topology: Topology = field(default_factory=Topology)
    baselines: list[tuple[float, float]] = field(default_factory=list)   # windows marked fault-free (any time)
    alert: Alert | None = None
    focus: frozenset[str] | None = None   # the resources evidence-only analyzers describe (None: all)
