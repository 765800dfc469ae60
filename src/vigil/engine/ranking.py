"""Combine per-signal findings into one ranked list of (resource, fault kind) with a confidence,
discounting resources whose symptoms are explained by a dependency that looks worse."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

from vigil.engine.changes import analyze_changes
from vigil.engine.decompose import analyze_excess
from vigil.engine.findings import Finding
from vigil.engine.logs import analyze_logs
from vigil.engine.metrics import CATEGORY_WEIGHT, analyze_metrics
from vigil.engine.observation import Observation, Settings
from vigil.engine.stats import squash
from vigil.engine.traces import analyze_traces, call_edges
from vigil.model import EdgeKind, EvidenceKind, FaultKind, Hypothesis

# A score is judged against how anomalous everything else looks in the same window (contrast): an
# anomaly every service shows does not localise anything. FLOOR is the score that counts as "clearly
# anomalous" for each signal when nothing else is (robust z ~ 3; Anscombe-Poisson z ~ 3).
_FLOOR = {EvidenceKind.METRIC: 3.0, EvidenceKind.LOG: 1.0, EvidenceKind.TRACE: 3.0, EvidenceKind.CHANGE: 1.0}
# Excess decomposition scores are shares of the symptom (0..1): a tenth of it is clearly something.
_CATEGORY_FLOOR = {"excess": 0.1}
_CONTRAST_HALF = 2.0      # a finding twice the typical level counts half
# Categories whose symptoms travel from a callee to its callers; a cause's callers show them too.
_PROPAGATING = {"latency", "errors", "success", "template", "operation", "traffic", "syscall", "other"}
_EXPLAIN = 0.8            # how much of a propagating symptom a worse-looking dependency can explain away


@dataclass
class Analysis:
    hypotheses: list[Hypothesis]
    inconclusive: bool
    summary: str
    notes: list[tuple[str, str, dict]] = field(default_factory=list)   # (analyzer, message, data) for the journal
    findings: list[Finding] = field(default_factory=list)


def _weight(f: Finding) -> float:
    return CATEGORY_WEIGHT.get(f.category, 1.0) if f.signal is EvidenceKind.METRIC else 1.0


def _floor(signal: EvidenceKind, category: str) -> float:
    return _CATEGORY_FLOOR.get(category, _FLOOR[signal])


def _strength(f: Finding) -> float:
    return _weight(f) * squash(f.score / _floor(f.signal, f.category), _CONTRAST_HALF)


def _contrast(by_res: dict[str, list[Finding]]) -> dict[str, dict[tuple, float]]:
    """Per resource and (signal, category): the best finding's strength relative to the typical level of
    that (signal, category) across all candidate resources."""
    best: dict[str, dict[tuple, float]] = {}
    for r, fs in by_res.items():
        for f in fs:
            key = (f.signal, f.category)
            best.setdefault(r, {})[key] = max(best.get(r, {}).get(key, 0.0), f.score)
    keys = {k for d in best.values() for k in d}
    n = len(best)
    out: dict[str, dict[tuple, float]] = {r: {} for r in best}
    for key in keys:
        vals = sorted((d.get(key, 0.0) for d in best.values()), reverse=True)
        typical = vals[n // 4] if n else 0.0    # the upper quartile: a cause must stand out from it
        level = max(typical, _floor(*key))
        w = CATEGORY_WEIGHT.get(key[1], 1.0) if key[0] is EvidenceKind.METRIC else 1.0
        for r, d in best.items():
            if key in d:
                out[r][key] = w * squash(d[key] / level, _CONTRAST_HALF)
    return out


def _noisy_or(values) -> float:
    return 1.0 - math.prod(1.0 - v for v in values)


def _across_signals(strengths: dict[tuple, float], keep) -> float:
    """The strongest category within each signal type, combined across signal types: agreement of
    independent modalities (metrics, logs, traces, changes) adds up; many noisy categories of one
    modality do not."""
    per_signal: dict[str, float] = {}
    for (sig, cat), v in strengths.items():
        if keep(cat):
            family = "excess" if cat == "excess" else sig.value   # the decomposition is its own modality
            per_signal[family] = max(per_signal.get(family, 0.0), v)
    return _noisy_or(per_signal.values())


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
            d = f.detail
            if f.category == "errors" and d.get("exception"):
                return FaultKind.ERROR, "it started throwing exceptions (new or more frequent exception logs)"
            if f.category == "errors":
                return FaultKind.LOGIC, ("it reports a wrong value or state without an exception (new or more "
                                         "frequent application error logs)")
            if d.get("per_request") and d.get("shift") in ("gone", "fewer"):
                return FaultKind.ERROR, ("a code path stops midway: requests keep arriving but the log line that "
                                         "follows stops, as when an exception aborts it")
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
    for name, fn in (("metrics", analyze_metrics), ("excess", analyze_excess), ("logs", analyze_logs),
                     ("traces", analyze_traces), ("changes", analyze_changes)):
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

    strengths = _contrast(by_res)
    own: dict[str, float] = {}
    prop: dict[str, float] = {}
    local: dict[str, float] = {}
    for r, d in strengths.items():
        prop[r] = _across_signals(d, lambda cat: cat in _PROPAGATING)
        local[r] = _across_signals(d, lambda cat: cat not in _PROPAGATING)
        own[r] = _noisy_or((prop[r], local[r]))

    # topology: symptoms that propagate (latency, errors, changed behaviour) are discounted when a
    # dependency of the resource looks at least as bad; local evidence (saturation, changes) is not
    g = _graph(obs)
    final: dict[str, float] = {}
    explained_by: dict[str, str] = {}
    for r in own:
        worst_dep, worst = None, 0.0
        if r in g:
            for d in nx.descendants(g, r):
                if own.get(d, 0.0) > worst:
                    worst_dep, worst = d, own[d]
        expl = _EXPLAIN * min(worst / prop[r], 1.0) if worst_dep and prop[r] > 0 else 0.0
        final[r] = _noisy_or((prop[r] * (1.0 - expl), local[r]))
        if worst_dep and expl > 0.5 * _EXPLAIN:
            explained_by[r] = worst_dep

    ranked = sorted(final.items(), key=lambda kv: -kv[1])
    # Confidence of the top-1 is how far its score stands above the runner-up's (scores are in [0, 1]);
    # the rest of the belief is shared among the alternatives in proportion to their scores.
    top_conf = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0.0) if ranked else 0.0
    rest = sum(v for _, v in ranked[1:10]) or 1.0
    symptom = obs.alert.resource if obs.alert and obs.alert.resource else None
    hyps = []
    for rank, (r, sc) in enumerate(ranked[:10], start=1):
        fk, why = _fault_kind(by_res[r])
        conf = top_conf if rank == 1 else (1.0 - top_conf) * sc / rest
        path = [r]
        if symptom and symptom != r and symptom in g and r in g and nx.has_path(g, symptom, r):
            path = list(reversed(nx.shortest_path(g, symptom, r)))
        elif r in g:
            callers = list(nx.ancestors(g, r))
            affected = sorted((c for c in callers if own.get(c, 0) > 0), key=lambda c: -own[c])
            if affected:
                path = list(reversed(nx.shortest_path(g, affected[0], r)))
        ev = sorted(by_res[r], key=_strength, reverse=True)[:6]
        if r in explained_by and fk in (FaultKind.LATENCY, FaultKind.ERROR, FaultKind.LOGIC):
            why += f" (may be inherited from {explained_by[r]})"
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
