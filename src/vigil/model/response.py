"""Mitigation plans and prevention recommendations (filled by later work)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MitigationStep(BaseModel):
    action: str
    rationale: str = ""
    mutating: bool = False       # needs explicit opt-in and a person's approval
    command: str = ""


class Mitigation(BaseModel):
    hypothesis_id: str
    title: str
    steps: list[MitigationStep] = Field(default_factory=list)
    verification: str = ""
    rollback: str = ""


class Recommendation(BaseModel):
    space_id: str
    title: str
    category: str = ""           # recurring-cause, monitoring-gap, deploy-practice, config-drift
    detail: str = ""
    incidents: list[str] = Field(default_factory=list)
