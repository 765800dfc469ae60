"""Hypothesis: a candidate root cause with evidence and a propagation path."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from vigil.model.evidence import Evidence


class FaultKind(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK_DELAY = "network-delay"
    NETWORK_LOSS = "network-loss"
    ERROR = "error"              # exceptions, error responses
    LOGIC = "logic"              # wrong return value / logic fault: behaviour changed without errors
    CHANGE = "change"            # a bad deploy or config change
    LATENCY = "latency"          # slower, with no resource saturation to explain it
    POD_FAILURE = "pod-failure"  # the workload stopped reporting: paused, killed or restarting
    UNKNOWN = "unknown"


class HypothesisState(StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DISCARDED = "discarded"


class Hypothesis(BaseModel):
    id: str = ""
    investigation_id: str = ""
    rank: int
    resource: str
    fault_kind: FaultKind
    confidence: float = Field(ge=0.0, le=1.0)
    score: float = 0.0
    why: str = ""
    evidence: list[Evidence] = Field(default_factory=list)
    path: list[str] = Field(default_factory=list, description="Propagation path, cause first, symptom last.")
    state: HypothesisState = HypothesisState.PROPOSED
    note: str = ""
