"""The one result type every analyzer returns: a ``Finding`` says "this resource looks wrong in this way",
with the family it is scored in, the fault kind it points at, why, and typed details people (and the
console, reports and MCP) can look at.

Details are small dataclasses, one per kind of evidence; ``Finding.evidence()`` turns a finding into the
stored ``Evidence`` (its details as a plain dict with stable key names)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vigil.model import Evidence, EvidenceKind, FaultKind

# The scored families. Ranking judges each family's scores against its own "clearly anomalous" floor and
# combines families with a noisy-OR; ``evidence`` findings are shown to people but never scored.
FAMILIES = ("local", "excess", "patterns", "logs", "changes", "deviation")
EVIDENCE = "evidence"


@dataclass
class SeriesShift:
    """A metric series moved at the onset (local evidence and charts)."""

    metric: str = ""
    d: float = 0.0                  # log fold change of the incident median over the reference median
    z: float = 0.0                  # d in units of the reference's own noise
    base: float = 0.0               # reference median
    post: float = 0.0               # incident median
    reference: str = ""             # "marked" (a fault-free window) or "recent" (the minutes before the onset)
    loss_like: float = 0.0          # latency from spans: 1.0 when its slowed calls look like retransmission waits


@dataclass
class SeriesChart:
    """A series around the onset, for charts: reference statistics and the anomalous segment."""

    metric: str = ""
    baseline_median: float = 0.0
    baseline_scale: float = 0.0
    peak_value: float = 0.0
    z: float = 0.0
    n_baseline: int = 0
    n_incident: int = 0
    series: list[list[float]] = field(default_factory=list)
    onset: float = 0.0
    anomalous_from: float = 0.0
    anomalous_to: float = 0.0


@dataclass
class EdgeShift:
    """Calls on a service's edges slowed (or failed) between caller and callee."""

    side: str = ""                              # "in" (calls to it), "out" (calls it makes) or "both"
    edges: dict[str, float] = field(default_factory=dict)   # "a->b": shift of that edge
    source: str = ""                            # "edge metrics", "span pairs" or "client latency"
    loss_like: float = 0.0                      # share of slowed calls that look like retransmissions


@dataclass
class NewErrorLine:
    template: str = ""
    sample: str = ""
    operation: str = ""
    before: str = ""
    after: str = ""


@dataclass
class PatternChange:
    """The steps of a service's requests changed (request patterns)."""

    nats_per_request: float = 0.0
    shape: str = ""                  # "presence" of an event, or a "pair" of consecutive events
    direction: str = ""              # "new" or "missing"
    ends_request: bool = False
    error_log: bool = False
    operation: str = ""
    before: str = ""
    after: str = ""
    new_error: NewErrorLine | None = None


@dataclass
class TemplateCount:
    template: str = ""
    shift: str = ""
    before: int = 0
    just_before: int = 0
    after: int = 0
    expected: float = 0.0
    error: bool = False
    z: float = 0.0


@dataclass
class LogShift:
    """Log templates of a service appeared, vanished or changed rate."""

    templates: list[TemplateCount] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    shift: str = ""
    per_request: bool = False
    exception: bool = False
    error_origin_traces: int = 0
    error_traces: int = 0
    lines_before: int = 0
    lines_after: int = 0


@dataclass
class ChangeEvent:
    kind: str = ""
    description: str = ""
    author: str = ""
    lead_s: float = 0.0


@dataclass
class ExcessShare:
    kind: str = ""                   # "latency" or "errors"
    own_excess: float = 0.0
    total_excess: float = 0.0
    share: float = 0.0
    metric: str = ""
    requests_metric: str = ""


@dataclass
class SpanEvidence:
    """What a service's spans show: own time per operation, volumes, errors, an exemplar trace."""

    operation: str = ""
    self_ms_before: float = 0.0
    self_ms_after: float = 0.0
    spans_before: int = 0
    spans_after: int = 0
    expected: float = 0.0
    exemplar_trace: str = ""
    operations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SeriesStop:
    """A resource's series stopped (paused or restarted) or its memory climbed steadily."""

    metrics: list[str] = field(default_factory=list)
    stopped_at: float = 0.0
    slope_per_min: float = 0.0
    restarts: int = 0


@dataclass
class TraceExemplar:
    """One trace through a service after the onset, its spans as rows (for a waterfall)."""

    trace_id: str = ""
    why: str = ""
    spans: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ChangeTimeline:
    """Every change event the observation holds (for a timeline on the charts' time axis)."""

    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Neighbourhood:
    """The edges around a service and its callers (for the propagation path on the topology)."""

    edges: list[dict[str, str]] = field(default_factory=list)


Detail = (SeriesShift | SeriesChart | EdgeShift | PatternChange | LogShift | ChangeEvent | ExcessShare
          | SpanEvidence | SeriesStop | TraceExemplar | ChangeTimeline | Neighbourhood)


@dataclass
class Finding:
    resource: str
    family: str                      # one of FAMILIES, or EVIDENCE (shown, not scored)
    hypothesis: str                  # what the finding says is wrong: cpu, memory, network, latency, pattern, ...
    signal: EvidenceKind
    score: float                     # >= 0, in the family's own units (see ranking.FAMILY_FLOOR)
    title: str                       # why, in one line
    fault_kind: FaultKind | None = None
    first_ts: float | None = None    # when the signal first crossed its threshold
    detail: Detail | None = None

    def evidence(self) -> Evidence:
        d = asdict(self.detail) if self.detail is not None else {}
        return Evidence(kind=self.signal, resource=self.resource, title=self.title, score=round(self.score, 3),
                        detail={"category": self.hypothesis, "family": self.family, "first_ts": self.first_ts,
                                **({"fault_kind": self.fault_kind.value} if self.fault_kind else {}), **d})
