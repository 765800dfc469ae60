"""Combine per-signal findings into one ranked list of (resource, fault kind) with a confidence,
discounting resources whose symptoms are explained by a dependency that looks worse."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

from vigil.engine.changes import analyze_changes
from vigil.engine.findings import Finding
from vigil.engine.logs import analyze_logs
from vigil.engine.metrics import CATEGORY_WEIGHT, analyze_metrics
from vigil.engine.observation import Observation, Settings
from vigil.engine.stats import squash
from vigil.engine.traces import analyze_traces, call_edges
from vigil.model import EdgeKind, EvidenceKind, FaultKind, Hypothesis

# How much one strong signal of each kind counts, before combination (noisy-OR).
_SIGNAL_HALF = {EvidenceKind.METRIC: 8.0, EvidenceKind.LOG: 6.0, EvidenceKind.TRACE: 6.0, EvidenceKind.CHANGE: 5.0}


@dataclass
class Analysis:
    hypotheses: list[Hypothesis]
    inconclusive: bool
    summary: str
    notes: list[tuple[str, str, dict]] = field(default_factory=list)   # (analyzer, message, data) for the journal
    findings: list[Finding] = field(default_factory=list)


def _strength(f: Finding) -> float:
    w = CATEGORY_WEIGHT.get(f.category, 1.0) if f.signal is EvidenceKind.METRIC else 1.0
    return w * squash(f.score, _SIGNAL_HALF[f.signal])


def _graph(obs: Observation) -> nx.DiGraph:
    g = nx.DiGraph()
    for e in obs.topology.edges:
        if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON):
            g.add_edge(e.src, e.dst)
    for e in call_edges(obs.spans):
        g.add_edge(e.src, e.dst)
    return g


def _fault_kind(fs: list[Finding]) -> tuple[FaultKind, str]:
    """The fault kind the strongest evidence points at, and why."""
    by = sorted(fs, key=_strength, reverse=True)
    for f in by:
        if f.signal is EvidenceKind.CHANGE:
            return FaultKind.CHANGE, f"a {f.detail.get('kind', 'change')} landed shortly before the onset"
        if f.signal is EvidenceKind.LOG:
            if f.category == "errors":
                return FaultKind.ERROR, "new or more frequent error logs from this service"
            return FaultKind.LOGIC, "its log pattern changed (templates appeared or vanished) without errors"
        if f.signal is EvidenceKind.METRIC:
            cat = f.category
            if cat == "cpu":
                return FaultKind.CPU, f"CPU saturation ({f.detail.get('metric')})"
            if cat == "memory":
                return FaultKind.MEMORY, f"memory growth ({f.detail.get('metric')})"
            if cat == "disk":
                return FaultKind.DISK, f"disk pressure ({f.detail.get('metric')})"
            if cat == "network":
                return FaultKind.NETWORK_DELAY, f"network change ({f.detail.get('metric')})"
            if cat in ("errors", "success"):
                return FaultKind.ERROR, f"error rate rose ({f.detail.get('metric')})"
            if cat == "latency":
                return FaultKind.LATENCY, f"latency rose with no saturation ({f.detail.get('metric')})"
        if f.signal is EvidenceKind.TRACE:
            if f.category == "network":
                return FaultKind.NETWORK_DELAY, "calls to and from it slowed in the network gap"
            if f.category == "errors":
                return FaultKind.ERROR, "its spans started failing"
            if f.category == "latency":
                return FaultKind.LATENCY, "its own span time rose"
            if f.category == "operation":
                return FaultKind.LOGIC, "its operations' volume changed"
    return FaultKind.UNKNOWN, "no dominant signal"


def analyze(obs: Observation, settings: Settings | None = None) -> Analysis:
    s = settings or Settings()
    notes: list[tuple[str, str, dict]] = []
    findings: list[Finding] = []
    for name, fn in (("metrics", analyze_metrics), ("logs", analyze_logs), ("traces", analyze_traces),
                     ("changes", analyze_changes)):
        got = fn(obs, s)
        findings.extend(got)
        top = sorted(got, key=lambda f: -f.score)[:3]
        notes.append((name, f"{len(got)} findings" + (": strongest " + "; ".join(
            f"{f.resource} {f.title}" for f in top) if top else ""), {"findings": len(got)}))

    kinds = {r.name: r.kind for r in obs.topology.resources}
    candidates = {f.resource for f in findings if kinds.get(f.resource, "") in s.candidate_kinds}
    by_res: dict[str, list[Finding]] = {}
    for f in findings:
        if f.resource in candidates:
            by_res.setdefault(f.resource, []).append(f)

    # noisy-OR of the strongest finding per signal kind
    own: dict[str, float] = {}
    for r, fs in by_res.items():
        best: dict[EvidenceKind, float] = {}
        for f in fs:
            best[f.signal] = max(best.get(f.signal, 0.0), _strength(f))
        own[r] = 1.0 - math.prod(1.0 - v for v in best.values())

    # topology: a resource whose (transitive) dependency looks at least as bad is likely a victim
    g = _graph(obs)
    final: dict[str, float] = {}
    explained_by: dict[str, str] = {}
    for r, sc in own.items():
        worst_dep, worst = None, 0.0
        if r in g:
            for d in nx.descendants(g, r):
                if own.get(d, 0.0) > worst:
                    worst_dep, worst = d, own[d]
        final[r] = sc * (1.0 - 0.5 * min(worst / sc, 1.0)) if worst_dep and sc > 0 else sc
        if worst_dep and worst >= sc:
            explained_by[r] = worst_dep

    ranked = sorted(final.items(), key=lambda kv: -kv[1])
    total = sum(v for _, v in ranked[:5]) or 1.0
    symptom = obs.alert.resource if obs.alert and obs.alert.resource else None
    hyps = []
    for rank, (r, sc) in enumerate(ranked[:10], start=1):
        fk, why = _fault_kind(by_res[r])
        conf = sc * (sc / total) if rank == 1 else sc / total * 0.5
        path = [r]
        if symptom and symptom != r and symptom in g and r in g and nx.has_path(g, symptom, r):
            path = list(reversed(nx.shortest_path(g, symptom, r)))
        elif r in g:
            callers = list(nx.ancestors(g, r))
            affected = sorted((c for c in callers if own.get(c, 0) > 0), key=lambda c: -own[c])
            if affected:
                path = list(reversed(nx.shortest_path(g, affected[0], r)))
        ev = sorted(by_res[r], key=_strength, reverse=True)[:6]
        hyps.append(Hypothesis(rank=rank, resource=r, fault_kind=fk, confidence=round(min(max(conf, 0.0), 1.0), 3),
                               score=round(sc, 4), why=why, evidence=[f.evidence() for f in ev], path=path))
    inconclusive = not hyps or hyps[0].confidence < s.inconclusive_margin
    if not hyps:
        summary = "No resource shows anomalous behaviour in the window: inconclusive."
    elif inconclusive:
        summary = (f"Inconclusive: no candidate stands out; best guesses "
                   f"{', '.join(h.resource for h in hyps[:3])}.")
    else:
        h = hyps[0]
        summary = f"Probable root cause: {h.resource} ({h.fault_kind.value}), confidence {h.confidence:.0%}: {h.why}."
    return Analysis(hypotheses=hyps, inconclusive=inconclusive, summary=summary, notes=notes, findings=findings)
