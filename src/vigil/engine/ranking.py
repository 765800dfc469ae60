"""Run the analyzers on a prepared observation and combine their findings into one ranked list of
(resource, fault kind) with a confidence. Ranking only combines: every judgement about telemetry is an
analyzer's.

1. **Contrast.** Within each family a resource's best score is divided by the level of the upper quartile
   of all candidates (or the family's floor that means "clearly anomalous" when everything else is
   quiet), then squashed to [0, 1): an anomaly every service shows localises nothing.
2. **Combination.** Families combine with a noisy-OR: independent modalities that agree add up. The
   generic deviation family counts with a small weight (it says that something moved, not why).
3. **Topology.** Log symptoms travel from a callee to its callers: a resource's log family is discounted
   by up to ``explain_away`` when a dependency looks at least as bad (the other families already take
   their neighbours into account).
4. **Evidence** for people: the evidence-only analyzers describe the leading candidates.
5. **Confidence**: see ``confidence.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import networkx as nx

from vigil.engine.analyzer import Analyzer
from vigil.engine.confidence import confidences
from vigil.engine.findings import EVIDENCE, Finding
from vigil.engine.kinds import fault_kind
from vigil.engine.observation import Observation
from vigil.engine.prepared import Prepared, python_strings
from vigil.engine.registry import ANALYZERS
from vigil.engine.settings import Settings
from vigil.engine.stats import squash
from vigil.model import FaultKind, Hypothesis


@dataclass
class Analysis:
    hypotheses: list[Hypothesis]
    inconclusive: bool
    summary: str
    notes: list[tuple[str, str, dict]] = field(default_factory=list)   # (analyzer, message, data) for the journal
    findings: list[Finding] = field(default_factory=list)


def _note_run(a: Analyzer, got: list[Finding], seconds: float) -> tuple[str, str, dict]:
    top = sorted(got, key=lambda f: -f.score)[:3]
    msg = f"{len(got)} findings" + (": strongest " + "; ".join(f"{f.resource} {f.title}" for f in top) if top else "")
    return a.name, msg, {"findings": len(got), "family": a.family, "seconds": round(seconds, 4)}


def _run(analyzers, p: Prepared, findings: list[Finding], notes: list) -> None:
    for a in analyzers:
        why = a.missing(p)
        if why:
            notes.append((a.name, f"could not run: {why}", {"findings": 0, "family": a.family, "skipped": why}))
            continue
        t0 = time.perf_counter()
        got = a.analyze(p, p.settings.config(a))
        findings.extend(got)
        notes.append(_note_run(a, got, time.perf_counter() - t0))


def analyze(obs: Observation, settings: Settings | None = None, quick: bool = False) -> Analysis:
    """Rank root-cause hypotheses. ``quick`` gives a first ranking in a fraction of the time: every
    scored family, request patterns over fewer traces, but no log-count fallback and no evidence
    series; the full analysis refines it."""
    with python_strings():
        return rank(Prepared(obs, settings, quick=quick))


def _family_strengths(by_res: dict[str, list[Finding]], s: Settings) -> dict[str, dict[str, float]]:
    floors, half = s.ranking.floors, s.ranking.contrast_half
    best: dict[str, dict[str, float]] = {r: {} for r in by_res}
    for r, fs in by_res.items():
        for f in fs:
            if f.family in floors:
                best[r][f.family] = max(best[r].get(f.family, 0.0), f.score)
    n = len(best)
    out: dict[str, dict[str, float]] = {r: {} for r in best}
    for fam, floor in floors.items():
        vals = sorted((d.get(fam, 0.0) for d in best.values()), reverse=True)
        typical = vals[n // 4] if n else 0.0          # the upper quartile: a cause must stand out from it
        level = max(typical, floor)
        weight = s.ranking.deviation_weight if fam == "deviation" else 1.0
        for r, d in best.items():
            if fam in d:
                out[r][fam] = weight * squash(d[fam] / level, half)
    return out


def strength(f: Finding, s: Settings) -> float:
    """Strength of one finding against its family's floor (for ordering evidence)."""
    floor = s.ranking.floors.get(f.family)
    return 0.0 if floor is None else squash(f.score / floor, s.ranking.contrast_half)


def _noisy_or(values) -> float:
    return 1.0 - math.prod(1.0 - v for v in values)


def rank(p: Prepared) -> Analysis:
    s = p.settings
    notes: list[tuple[str, str, dict]] = []
    findings: list[Finding] = []
    scored = [a for a in ANALYZERS if a.family != EVIDENCE and a.name != "logs"]
    _run(scored, p, findings, notes)
    # aggregate log template counts: scored only where request patterns found nothing (no spans tie logs
    # to requests); otherwise the patterns family already reads the same logs
    if not p.quick and not any(f.family == "patterns" for f in findings):
        _run([a for a in ANALYZERS if a.name == "logs"], p, findings, notes)

    by_res: dict[str, list[Finding]] = {}
    for f in findings:
        if p.candidate(f.resource):
            by_res.setdefault(f.resource, []).append(f)
    strengths = _family_strengths(by_res, s)
    own = {r: _noisy_or(d.values()) for r, d in strengths.items()}

    g = p.graph
    final: dict[str, float] = {}
    explained_by: dict[str, str] = {}
    for r, d in strengths.items():
        logs = d.get("logs", 0.0)
        worst_dep, worst = None, 0.0
        if logs > 0 and r in g:
            for dep in nx.descendants(g, r):
                if own.get(dep, 0.0) > worst:
                    worst_dep, worst = dep, own[dep]
        expl = s.ranking.explain_away * min(worst / logs, 1.0) if worst_dep and logs > 0 else 0.0
        final[r] = _noisy_or([v for k, v in d.items() if k != "logs"] + [logs * (1.0 - expl)])
        if worst_dep and expl > 0.5 * s.ranking.explain_away:
            explained_by[r] = worst_dep

    ranked = sorted(((r, v) for r, v in final.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    ranked = ranked[: s.ranking.max_hypotheses]
    leaders = {r for r, _ in ranked[: s.ranking.evidence_for_top]} if not p.quick else set()
    if leaders:
        extra: list[Finding] = []
        _run([a for a in ANALYZERS if a.family == EVIDENCE], p.focused(leaders), extra, notes)
        findings.extend(extra)
        for f in extra:
            if f.resource in by_res:
                by_res[f.resource].append(f)

    confs = confidences([v for _, v in ranked], s)
    symptom = p.alert.resource if p.alert and p.alert.resource else None
    hyps = []
    for rank_no, ((r, sc), conf) in enumerate(zip(ranked, confs, strict=True), start=1):
        fs = by_res[r]
        scoring = sorted((f for f in fs if f.family in s.ranking.floors and f.family != "deviation"),
                         key=lambda f: strength(f, s), reverse=True)
        fk, why = fault_kind(scoring, fs)
        if not scoring and fk is FaultKind.UNKNOWN:
            dev = max((f for f in fs if f.family == "deviation"), key=lambda f: f.score, default=None)
            why = f"no specific evidence; its telemetry moved the most: {dev.title}" if dev else "no dominant signal"
        path = [r]
        if symptom and symptom != r and symptom in g and r in g and nx.has_path(g, symptom, r):
            path = list(reversed(nx.shortest_path(g, symptom, r)))
        elif r in g:
            affected = sorted((c for c in nx.ancestors(g, r) if own.get(c, 0) > 0), key=lambda c: -own[c])
            if affected:
                path = list(reversed(nx.shortest_path(g, affected[0], r)))
        shown = sorted((f for f in fs if f.family == EVIDENCE), key=lambda f: -f.score)[:3]
        if r in explained_by and fk in (FaultKind.ERROR, FaultKind.LOGIC) and scoring and scoring[0].family == "logs":
            why += f" (may be inherited from {explained_by[r]})"
        hyps.append(Hypothesis(rank=rank_no, resource=r, fault_kind=fk, confidence=round(conf, 3),
                               score=round(sc, 4), why=why,
                               evidence=[f.evidence() for f in scoring[:4] + shown], path=path))
    inconclusive = not hyps or hyps[0].confidence < s.ranking.inconclusive_below
    if not hyps:
        summary = "No resource shows anomalous behaviour in the window: inconclusive."
    elif inconclusive:
        summary = (f"Inconclusive: no candidate stands out; best guesses "
                   f"{', '.join(h.resource for h in hyps[:3])}.")
    else:
        h = hyps[0]
        summary = f"Probable root cause: {h.resource} ({h.fault_kind.value}), confidence {h.confidence:.0%}: {h.why}."
    return Analysis(hypotheses=hyps, inconclusive=inconclusive, summary=summary, notes=notes, findings=findings)
