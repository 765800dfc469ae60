"""Domain types (pydantic v2). Times are timezone-aware UTC datetimes at the edges and
epoch seconds (float) inside telemetry frames."""

from vigil.model.evidence import Evidence, EvidenceKind
from vigil.model.hypothesis import FaultKind, Hypothesis, HypothesisState
from vigil.model.incident import (
    AlertOutcome,
    AlertStatus,
    ApiToken,
    Incident,
    IncidentAlert,
    IncidentStatus,
    IncomingAlert,
    Role,
)
from vigil.model.investigation import (
    Investigation,
    InvestigationStatus,
    StartingPoint,
    Steering,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.model.journal import JournalEntry, JournalKind
from vigil.model.response import Mitigation, MitigationStep, Recommendation
from vigil.model.signals import Alert, ChangeEvent, ChangeKind, LogRecord, MetricPoint, Span
from vigil.model.space import AgentSpace, AlertGrouping, Policies
from vigil.model.topology import Edge, EdgeKind, EdgeSource, Resource, Topology

__all__ = [
    "AgentSpace", "Alert", "AlertGrouping", "AlertOutcome", "AlertStatus", "ApiToken", "Incident", "IncidentAlert",
    "IncidentStatus", "IncomingAlert", "Role", "StartingPoint", "Steering", "ChangeEvent", "ChangeKind", "Edge", "EdgeKind", "EdgeSource", "Evidence",
    "EvidenceKind", "FaultKind", "Hypothesis", "HypothesisState", "Investigation", "InvestigationStatus",
    "JournalEntry", "JournalKind", "LogRecord", "MetricPoint", "Mitigation", "MitigationStep", "Policies",
    "Recommendation", "Resource", "Span", "Topology", "Trigger", "TriggerKind", "Window",
]
