"""Skills: Markdown runbooks attached to a space, matched to an investigation's hypotheses by service
(glob), fault kind and alert labels, and cited in the mitigation spec; a skill marked ``always`` is a
standing instruction that every spec (and the chat's model prompt) carries."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from vigil.model import FaultKind, Hypothesis
from vigil.respond.spec import RunbookRef

NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class SkillMatch(BaseModel):
    services: list[str] = Field(default_factory=list, max_length=50, description="Service name globs.")
    fault_kinds: list[FaultKind] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict, max_length=20, description="Alert labels (all must match).")


class SkillIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(default="", max_length=100_000, description="The runbook, Markdown.")
    match: SkillMatch = Field(default_factory=SkillMatch)
    always: bool = Field(default=False, description="A standing instruction for every investigation.")

    @field_validator("body")
    @classmethod
    def _body(cls, v: str) -> str:
        return v.replace("\r\n", "\n")


def valid_name(name: str) -> bool:
    return bool(re.match(NAME, name))


def matches(skill: dict[str, Any], h: Hypothesis, labels: dict[str, str] | None = None) -> list[str]:
    """Why the skill applies to the hypothesis (empty: it does not)."""
    m = SkillMatch.model_validate(skill.get("match") or {})
    why = []
    if m.services and any(fnmatch.fnmatchcase(h.resource, g) for g in m.services):
        why.append(f"service {h.resource}")
    if m.fault_kinds and h.fault_kind in m.fault_kinds:
        why.append(f"fault kind {h.fault_kind.value}")
    if m.labels and labels and all(labels.get(k) == v for k, v in m.labels.items()):
        why.append("alert labels " + ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items())))
    return why


def runbooks_for(skills: list[dict[str, Any]], h: Hypothesis, labels: dict[str, str] | None = None) -> list[RunbookRef]:
    out = []
    for s in skills:
        if s.get("always"):
            continue
        why = matches(s, h, labels)
        if why:
            out.append(RunbookRef(id=s["name"], title=s.get("title") or s["name"], matched=why))
    return out


def instructions(skills: list[dict[str, Any]], limit: int = 4000) -> str:
    text = "\n\n".join(f"{s.get('title') or s['name']}: {s.get('body', '').strip()}" for s in skills if s.get("always"))
    return text[:limit]
