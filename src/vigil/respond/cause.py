"""The root cause as a change: a pure post-ranking step.

When a change (deploy, config, scaling, manual action) on the suspect, or on a service the suspect
depends on, precedes the onset, the conclusion names that change as the cause (what, who, when, the
revision, the diff or the changed keys when the source gave them) and the suspect's fault as its
effect: "change X on S (who, when) -> S's fault -> symptom". The ranking itself is not touched.

Input is what the engine was given (the changes frame with its ``detail`` JSON, the topology, the
onset, the alert) and its ranked hypotheses; nothing here does I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import networkx as nx
import pandas as pd
from pydantic import BaseModel, Field

from vigil.model import EdgeKind, Evidence, EvidenceKind, Hypothesis, HypothesisState, Topology

HORIZON_S = 1800.0      # the engine's change horizon: older changes are unlikely triggers
AFTER_S = 60.0          # a change recorded up to a minute after the onset still counts (clock skew, batching)
KIND_WEIGHT = {"deploy": 1.0, "config": 1.0, "scale": 0.8, "manual": 0.8, "rollback": 0.6, "code": 0.5}


class ChangeRef(BaseModel):
    """One change event as the conclusion cites it."""

    resource: str
    at: datetime
    kind: str
    description: str
    author: str = ""
    lead_s: float = Field(description="Seconds before the onset (negative: after it).")
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        k = self.detail.get("keys")
        return [str(x) for x in k] if isinstance(k, list) else []

    @property
    def revision(self) -> str:
        for f in ("sha", "revision"):
            if self.detail.get(f) not in (None, ""):
                return str(self.detail[f])
        return ""

    def headline(self) -> str:
        """'deploy of orders-api by alice at 12:03:10Z (95 s before the onset): <what>; changed keys A, B'"""
        who = f" by {self.author}" if self.author else ""
        when = "before" if self.lead_s >= 0 else "after"
        out = (f"{self.kind} of {self.resource}{who} at {self.at:%Y-%m-%d %H:%M:%S}Z "
               f"({abs(int(self.lead_s))} s {when} the onset): {self.description}")
        if self.keys:
            out += f"; changed keys {', '.join(self.keys[:8])}"
        return out


class Cause(BaseModel):
    """change -> the suspect's fault -> the symptom."""

    hypothesis_id: str = ""
    rank: int
    change: ChangeRef
    suspect: str
    fault_kind: str
    via_dependency: bool = Field(description="The change is on a service the suspect depends on.")
    symptom: str | None = None
    chain: list[str] = Field(description="Changed service first, then the suspect, then the path to the symptom.")
    statement: str


def _deps(topology: Topology) -> nx.DiGraph:
    g = nx.DiGraph()
    for e in topology.edges:
        if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON):
            g.add_edge(e.src, e.dst)
    return g


def _detail(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        v = json.loads(raw)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def changes_near(changes: pd.DataFrame, onset: float) -> list[ChangeRef]:
    """The changes within the horizon before the onset (and a minute after), nearest first."""
    if changes is None or changes.empty:
        return []
    out = []
    has_detail = "detail" in changes.columns
    for row in changes.itertuples(index=False):
        lead = onset - float(row.ts)
        if -AFTER_S <= lead <= HORIZON_S:
            out.append(ChangeRef(resource=str(row.resource), at=datetime.fromtimestamp(float(row.ts), UTC),
                                 kind=str(row.kind), description=str(row.description or ""),
                                 author=str(row.author or "") if pd.notna(row.author) else "",
                                 lead_s=round(lead, 1), detail=_detail(row.detail) if has_detail else {}))
    return sorted(out, key=lambda c: abs(c.lead_s))


def _pick(candidates: list[ChangeRef], suspect: str, deps: set[str]) -> tuple[ChangeRef, bool] | None:
    """The suspect's own change first, then a dependency's; within each the strongest kind, nearest."""
    def best(cs: list[ChangeRef]) -> ChangeRef | None:
        cs = [c for c in cs if KIND_WEIGHT.get(c.kind, 0.5) > 0]
        return max(cs, key=lambda c: (KIND_WEIGHT.get(c.kind, 0.5), -max(c.lead_s, 0.0))) if cs else None
    own = best([c for c in candidates if c.resource == suspect])
    if own is not None:
        return own, False
    dep = best([c for c in candidates if c.resource in deps])
    return (dep, True) if dep is not None else None


def explain(hypotheses: list[Hypothesis], changes: pd.DataFrame, topology: Topology, onset: float,
            symptom: str | None = None, top: int = 3) -> list[Cause]:
    """A Cause for each of the ``top`` live hypotheses that a change explains."""
    candidates = changes_near(changes, onset)
    if not candidates:
        return []
    g = _deps(topology)
    out = []
    for h in [h for h in hypotheses if h.state is not HypothesisState.DISCARDED][:top]:
        deps = set(nx.descendants(g, h.resource)) if h.resource in g else set()
        picked = _pick(candidates, h.resource, deps)
        if picked is None:
            continue
        ch, via_dep = picked
        path = list(h.path) if h.path else [h.resource]
        if path and path[0] != h.resource:
            path = [h.resource]
        chain = ([ch.resource] if via_dep else []) + path
        sym = symptom or (path[-1] if len(path) > 1 else None)
        if sym and chain[-1] != sym:
            chain.append(sym)
        effect = f"{h.resource} {h.fault_kind.value}"
        tail = f" -> {' -> '.join(chain[chain.index(h.resource) + 1:])}" if chain[-1] != h.resource else ""
        statement = (f"{ch.headline()} -> " + (f"{ch.resource}, a dependency of {h.resource} -> " if via_dep else "")
                     + f"{effect}{tail}")
        out.append(Cause(hypothesis_id=h.id, rank=h.rank, change=ch, suspect=h.resource,
                         fault_kind=h.fault_kind.value, via_dependency=via_dep, symptom=sym, chain=chain,
                         statement=statement))
    return out


def restate(hypotheses: list[Hypothesis], summary: str, causes: list[Cause], inconclusive: bool) -> str:
    """The conclusion with the change as the cause and the fault as its effect (``summary`` unchanged when
    no change explains the leading hypothesis). Each explained hypothesis's ``why`` names its change, and
    the change is the first piece of its evidence."""
    by_id = {c.hypothesis_id or c.suspect: c for c in causes}
    for h in hypotheses:
        c = by_id.get(h.id or h.resource)
        if c is None:
            continue
        if not h.why.startswith("caused by "):
            h.why = f"caused by {c.change.kind} of {c.change.resource}" + (
                f" by {c.change.author}" if c.change.author else "") + f" {abs(int(c.change.lead_s))} s " + (
                "before" if c.change.lead_s >= 0 else "after") + f" the onset; {h.why}"
        title = c.change.headline()
        if not any(e.kind is EvidenceKind.CHANGE and e.title == title for e in h.evidence):
            h.evidence.insert(0, Evidence(kind=EvidenceKind.CHANGE, resource=c.change.resource, title=title,
                                          score=10.0, detail={"category": "cause", "first_ts": c.change.at.timestamp(),
                                                              "change": c.change.model_dump(mode="json")}))
    live = [h for h in hypotheses if h.state is not HypothesisState.DISCARDED]
    lead = by_id.get(live[0].id or live[0].resource) if live else None
    if lead is None or inconclusive:
        return summary
    h = live[0]
    return (f"Probable root cause: {lead.statement} (confidence {h.confidence:.0%}). "
            f"The fault: {h.resource} ({h.fault_kind.value}).")


def conclude(analysis: Any, obs: Any, trigger: Any = None) -> list[Cause]:
    """The post-ranking step ``Investigator.run`` calls on a full analysis (``vigil.engine.Analysis``
    and its ``Observation``): applies a rerun's steering (``respond.steer``), then restates the summary
    and the explained hypotheses, and adds notes the journal records (the causes as data)."""
    from vigil.respond.steer import apply
    steered = apply(analysis, getattr(trigger, "steering", None), obs.topology)
    if steered:
        analysis.notes.append(("steering", steered, {"steering": trigger.steering.model_dump(mode="json")}))
    symptom = obs.alert.resource if getattr(obs, "alert", None) is not None and obs.alert.resource else None
    causes = explain(analysis.hypotheses, obs.changes, obs.topology, obs.onset, symptom)
    if causes:
        analysis.summary = restate(analysis.hypotheses, analysis.summary, causes, analysis.inconclusive)
        for c in causes:
            analysis.notes.append(("cause", f"hypothesis #{c.rank}: {c.statement}",
                                   {"cause": c.model_dump(mode="json")}))
    return causes


def from_journal(journal: list[Any]) -> dict[str, Cause]:
    """The causes an investigation named (its ``cause`` journal notes), by suspect resource."""
    out: dict[str, Cause] = {}
    for e in journal:
        c = e.data.get("cause") if getattr(e.kind, "value", e.kind) == "analysis" and isinstance(e.data, dict) else None
        if isinstance(c, dict):
            try:
                cause = Cause.model_validate(c)
            except ValueError:
                continue
            out.setdefault(cause.suspect, cause)
    return out
