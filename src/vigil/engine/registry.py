"""Every analyzer the engine runs, in order. A new analyzer is a module under ``engine/analyzers/`` and one
line here."""

from __future__ import annotations

from vigil.engine.analyzer import Analyzer
from vigil.engine.analyzers.changes import Changes
from vigil.engine.analyzers.deviation import Deviation
from vigil.engine.analyzers.excess import Excess
from vigil.engine.analyzers.growth import Growth
from vigil.engine.analyzers.local import Local
from vigil.engine.analyzers.logs import Logs
from vigil.engine.analyzers.metric_evidence import MetricEvidence
from vigil.engine.analyzers.patterns import Patterns
from vigil.engine.analyzers.resources import Resources
from vigil.engine.analyzers.span_evidence import Spans
from vigil.engine.analyzers.views import Views

ANALYZERS: tuple[Analyzer, ...] = (
    Local(),
    Resources(),
    Excess(),
    Patterns(),
    Logs(),
    Changes(),
    Deviation(),
    MetricEvidence(),
    Growth(),
    Spans(),
    Views(),
)


def by_name(name: str) -> Analyzer:
    for a in ANALYZERS:
        if a.name == name:
            return a
    raise KeyError(name)
