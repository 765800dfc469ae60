"""Every setting the engine has, in one tree: the windows, how ranking combines families, and each
analyzer's own ``Config`` (kept in the analyzer's module, reachable here by the analyzer's name).

One set for every dataset: the values are conventional statistical choices or operational defaults,
documented with their reasons in docs/engine.md (a test checks the document lists every one)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Ranking:
    """How the families' findings become one ranked list."""

    floors: MappingProxyType = field(default_factory=lambda: MappingProxyType(
        {"local": 1.0, "excess": 0.1, "patterns": 0.5, "logs": 1.0, "changes": 1.0, "deviation": 3.0}))
    contrast_half: float = 2.0        # a score twice the family's typical level counts half
    explain_away: float = 0.8         # how much of a log symptom a worse-looking dependency explains away
    deviation_weight: float = 0.25    # the generic deviation family only breaks ties and fills the ranking
    inconclusive_below: float = 0.5   # a top-1 less likely right than wrong is inconclusive
    # the top-1's confidence: logistic in (1, s1, s1 - s2, s2 / s1); fitted across the benchmark's
    # recordings (benchmarks/calibrate.py) and checked out of recording by the bench
    # (benchmarks/calibrate.py on the bench of 2026-12-04: 278 cases, six recordings)
    calibration: tuple[float, float, float, float] = (2.9078, 6.3962, 2.0806, -4.1516)
    max_hypotheses: int = 10
    evidence_for_top: int = 10        # evidence-only analyzers describe this many leading candidates


@dataclass(frozen=True)
class Settings:
    metric_lookback_s: float = 3600.0     # metric history gathered before the onset
    event_lookback_s: float = 300.0       # log and span history gathered before the onset (high volume)
    onset_guard_s: float = 60.0           # the fault may have begun this long before the alert
    after_s: float = 300.0                # telemetry gathered after the onset
    min_after_samples: int = 2            # at least this many samples of a slow series after the onset
    min_reference_points: int = 10        # a marked fault-free window must hold this many points of a series
    min_events: int = 5                   # fewer events than this in both windows says nothing
    candidate_kinds: tuple[str, ...] = ("service", "database", "queue", "function", "resource", "")
    pattern_traces: int = 3000            # request patterns: traces per side (a busy window is thinned evenly)
    quick_pattern_traces: int = 500       # ...in a preliminary ranking
    ranking: Ranking = field(default_factory=Ranking)
    analyzers: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))   # name -> Config override

    def config(self, analyzer: Any) -> Any:
        """The analyzer's configuration: an override given here, else its defaults."""
        got = self.analyzers.get(analyzer.name)
        return got if got is not None else analyzer.Config()

    def with_config(self, name: str, config: Any) -> Settings:
        return dataclasses.replace(self, analyzers=MappingProxyType({**self.analyzers, name: config}))
