"""Combine the analyzers' findings into one ranked list of (resource, fault kind) with a confidence.

Scored evidence comes in families, each with its own notion of "clearly anomalous":
- ``local``: hypothesis-specific local evidence on the call graph (metrics, per-edge latency,
  spans; what a service's own series show once its neighbours' share is taken out), see local.py;
- ``excess``: the excess-volume decomposition (latency-seconds and errors net of callees);
- ``logs``: template shifts per request or per volume, error origins;
- ``changes``: deploys, config changes and manual actions before the onset.
Within a family, a resource's best score is judged against the upper quartile of all candidates
(contrast: an anomaly every service shows localises nothing); families combine with a noisy-OR
(independent modalities that agree add up). The generic metric and trace analyzers contribute
evidence people can look at (series, exemplars) but no score of their own: the local family
already scores those signals with their neighbours taken into account.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import warnings
from dataclasses import dataclass, field

import networkx as nx
import pandas as pd

from vigil.engine.changes import analyze_changes
from vigil.engine.decompose import analyze_excess
from vigil.engine.findings import Finding
from vigil.engine.local import analyze_local
from vigil.engine.logs import analyze_logs
from vigil.engine.metrics import analyze_metrics
from vigil.engine.observation import Observation, Settings
from vigil.engine.patterns import analyze_patterns
from vigil.engine.stats import squash
from vigil.engine.traces import analyze_traces, call_edges
from vigil.model import EdgeKind, EvidenceKind, FaultKind, Hypothesis

# The score that means "clearly anomalous" in each family when nothing else is: local evidence is
# in log-fold-change units (1 = e-fold change, gated by significance); log z-scores are already past
# the multiple-testing bar; excess is a share of the alerting symptom; a change event scores 0..10.
FAMILY_FLOOR = {"local": 1.0, "excess": 0.1, "patterns": 0.5, "logs": 1.0, "changes": 1.0}
_CONTRAST_HALF = 2.0      # a score twice the typical level counts half
_EXPLAIN = 0.8            # how much of a log symptom a worse-looking dependency can explain away


@dataclass
class Analysis:
    hypotheses: list[Hypothesis]
    inconclusive: bool
    summary: str
    notes: list[tuple[str, str, dict]] = field(default_factory=list)   # (analyzer, message, data) for the journal
    findings: list[Finding] = field(default_factory=list)


def family(f: Finding) -> str | None:
    if f.category.startswith("local:"):
        return "local"
    if f.category == "excess":
        return "excess"
    if f.category == "pattern":
        return "patterns"
    if f.signal is EvidenceKind.LOG:
        return "logs"
    if f.signal is EvidenceKind.CHANGE:
        return "changes"
    return None


def _strength(f: Finding) -> float:
    """Strength of one finding against its family's floor (for ordering evidence)."""
    fam = family(f)
    if fam is None:
        return 0.0
    return squash(f.score / FAMILY_FLOOR[fam], _CONTRAST_HALF)


def _family_strengths(by_res: dict[str, list[Finding]]) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {r: {} for r in by_res}
    for r, fs in by_res.items():
        for f in fs:
            fam = family(f)
            if fam is not None:
                best[r][fam] = max(best[r].get(fam, 0.0), f.score)
    n = len(best)
    out: dict[str, dict[str, float]] = {r: {} for r in best}
    for fam in FAMILY_FLOOR:
        vals = sorted((d.get(fam, 0.0) for d in best.values()), reverse=True)
        typical = vals[n // 4] if n else 0.0          # the upper quartile: a cause must stand out from it
        level = max(typical, FAMILY_FLOOR[fam])
        for r, d in best.items():
            if fam in d:
                out[r][fam] = squash(d[fam] / level, _CONTRAST_HALF)
    return out


def _noisy_or(values) -> float:
    return 1.0 - math.prod(1.0 - v for v in values)


def _graph(obs: Observation) -> nx.DiGraph:
    g = nx.DiGraph()
    for e in obs.topology.edges:
        if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON):
            g.add_edge(e.src, e.dst)
    for e in call_edges(obs.spans):
        g.add_edge(e.src, e.dst)
    return g


CPU_EXPLAINS_Z = 2.0
_LOCAL_KIND = {
    "local:cpu": (FaultKind.CPU, "its own CPU rose sharply"),
    "local:memory": (FaultKind.MEMORY, "its own memory rose sharply"),
    "local:disk": (FaultKind.DISK, "its own disk activity rose sharply"),
    "local:network": (FaultKind.NETWORK_DELAY, "calls to or from it slowed between caller and callee, and not "
                                               "on the other endpoints' edges: the delay is on its network"),
    "local:latency": (FaultKind.LATENCY, "its own (server) latency rose beyond what its calls explain"),
    "local:traffic": (FaultKind.ERROR, "it stopped making calls it used to make while its own traffic held: "
                                       "a code path aborted early"),
    "local:trace-pattern": (FaultKind.ERROR, "inside its spans, a call that always followed another stopped: "
                                             "its code path changed (an exception or early return)"),
    "local:entry": (FaultKind.ERROR, "user-facing success rate fell with nothing downstream to explain it"),
}


_EXCEPTION = re.compile(r"exception|throw|traceback|stack ?trace|panic|caught|catch", re.I)


def _pattern_kind(f: Finding) -> tuple[FaultKind, str]:
    """What a change in the steps of a service's requests says about the fault.

    A new error line is the most specific: it names an exception, or reports a wrong value or state.
    Otherwise, requests that now end early, or a step that no longer happens at all, mean the code
    path aborts (an exception); steps that still happen but in another order mean another branch was
    taken (a logic fault)."""
    d, t = f.detail, f.title
    err = d.get("new_error")
    if err:   # what a new error line in its own requests says is the most specific, whatever scored highest
        line = f"{err['operation']}: '{err['template'][:120]}' in {err['after']} requests vs {err['before']} before"
        if _EXCEPTION.search(err["template"] + " " + err["sample"]):
            return FaultKind.ERROR, f"its requests started throwing exceptions ({line})"
        return FaultKind.LOGIC, f"its requests started reporting a wrong value or state ({line})"
    if d.get("direction") == "new" and d.get("ends_request"):
        return FaultKind.ERROR, ("its requests now end right after a step that used to be followed by more: "
                                 f"the code path aborts, as an exception does ({t})")
    if d.get("direction") == "missing" and d.get("shape") == "presence":
        return FaultKind.ERROR, f"a step its requests always took stopped happening: the code path aborts early ({t})"
    return FaultKind.LOGIC, f"its requests take another branch: their steps changed order ({t})"


def _fault_kind(fs: list[Finding]) -> tuple[FaultKind, str]:
    """The fault kind the strongest scored evidence points at, and why.

    A rise in a service's own latency is a symptom every kind of fault can cause: when it is the
    strongest evidence but a statistically significant change in the same service's requests (a
    request-pattern or log finding, which pass a false-discovery-rate or null-maximum bar) says how
    the code path changed, that finding names the kind, unless the CPU explains the slowdown."""
    ordered = sorted(fs, key=_strength, reverse=True)
    if ordered and ordered[0].category == "local:latency" and not _cpu_explains(ordered[0], fs):
        specific = [f for f in ordered[1:] if family(f) in ("patterns", "logs")]
        if specific:
            ordered = specific[:1] + ordered
    for f in ordered:
        fam = family(f)
        if fam == "changes":
            return FaultKind.CHANGE, f"a {f.detail.get('kind', 'change')} landed shortly before the onset"
        if fam == "logs":
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
        if fam == "patterns":
            return _pattern_kind(f)
        if fam == "local":
            # a service slowing down while its own CPU is significantly up (2 sigma, where the local
            # family's 1-3 sigma gate is half open) is explained by the CPU: the latency is its symptom
            if f.category in ("local:latency", "local:network") and _cpu_explains(f, fs):
                return _LOCAL_KIND["local:cpu"]
            return _LOCAL_KIND.get(f.category, (FaultKind.UNKNOWN, f.title))
        if fam == "excess":
            if f.detail.get("kind") == "errors":
                return FaultKind.ERROR, f"it accounts for {f.score:.0%} of the excess errors on its own"
            return FaultKind.LATENCY, f"it accounts for {f.score:.0%} of the excess latency on its own"
    return FaultKind.UNKNOWN, "no dominant signal"


def _cpu_explains(f: Finding, fs: list[Finding]) -> bool:
    return any(g.category == "local:cpu" and (g.score >= 0.5 * f.score or g.detail.get("z", 0.0) >= CPU_EXPLAINS_Z)
               for g in fs)


SCORED = (("local", analyze_local), ("excess", analyze_excess), ("patterns", analyze_patterns),
          ("changes", analyze_changes))
# aggregate log template counts: scored only where request patterns cannot be built (no spans tying
# logs to requests); otherwise the patterns family already reads the same logs
# run afterwards for the leading candidates only: series and exemplars people look at
EVIDENCE = (("metrics", analyze_metrics), ("traces", analyze_traces))
EVIDENCE_FOR_TOP = 10


def _run(analyzers, obs: Observation, s: Settings, findings: list[Finding], notes: list) -> None:
    for name, fn in analyzers:
        got = fn(obs, s)
        findings.extend(got)
        top = sorted(got, key=lambda f: -f.score)[:3]
        notes.append((name, f"{len(got)} findings" + (": strongest " + "; ".join(
            f"{f.resource} {f.title}" for f in top) if top else ""), {"findings": len(got)}))


def analyze(obs: Observation, settings: Settings | None = None, quick: bool = False) -> Analysis:
    """Rank root-cause hypotheses. ``quick`` gives a first ranking in a fraction of the time: every
    scored family, request patterns over fewer traces, but no log-count fallback and no evidence
    series; the full analysis refines it."""
    with _python_strings():
        return _analyze(plain_strings(obs), settings, quick)


@contextlib.contextmanager
def _python_strings():
    """The analyzers do their string work in Python: plain object columns, and frames built inside
    the engine kept that way, are 10-20 % faster than pandas' Arrow-backed strings. pandas 3 still
    offers (and deprecates) the switch; without it this does nothing. The option is process-wide:
    the engine runs in worker processes, the CLI and the benchmark."""
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.filterwarnings("ignore", message=".*future.infer_string.*")
        with contextlib.suppress(KeyError, ValueError, pd.errors.OptionError):
            stack.enter_context(pd.option_context("future.infer_string", False))
        yield


def plain_strings(obs: Observation) -> Observation:
    """The observation with the string columns of its logs and spans (the per-request string work) as
    plain Python objects."""
    def plain(df: pd.DataFrame) -> pd.DataFrame:
        cols = {c: object for c in df.columns if pd.api.types.is_string_dtype(df[c].dtype) and df[c].dtype != object}
        return df.astype(cols) if cols else df
    return dataclasses.replace(obs, logs=plain(obs.logs), spans=plain(obs.spans))


def _analyze(obs: Observation, settings: Settings | None, quick: bool) -> Analysis:
    s = settings or Settings()
    notes: list[tuple[str, str, dict]] = []
    findings: list[Finding] = []
    if quick:
        s = dataclasses.replace(s, pattern_traces=min(s.pattern_traces, s.quick_pattern_traces))
    _run(SCORED, obs, s, findings, notes)
    if not quick and not any(family(f) == "patterns" for f in findings):
        _run((("logs", analyze_logs),), obs, s, findings, notes)

    kinds = {r.name: r.kind for r in obs.topology.resources}
    by_res: dict[str, list[Finding]] = {}
    for f in findings:
        if kinds.get(f.resource, "") in s.candidate_kinds:
            by_res.setdefault(f.resource, []).append(f)
    strengths = _family_strengths(by_res)
    own = {r: _noisy_or(d.values()) for r, d in strengths.items()}

    # topology: log symptoms travel from a callee to its callers (errors, changed patterns); they are
    # discounted when a dependency of the resource looks at least as bad. The local and excess
    # families already take their neighbours into account.
    g = _graph(obs)
    final: dict[str, float] = {}
    explained_by: dict[str, str] = {}
    for r, d in strengths.items():
        logs = d.get("logs", 0.0)
        worst_dep, worst = None, 0.0
        if logs > 0 and r in g:
            for dep in nx.descendants(g, r):
                if own.get(dep, 0.0) > worst:
                    worst_dep, worst = dep, own[dep]
        expl = _EXPLAIN * min(worst / logs, 1.0) if worst_dep and logs > 0 else 0.0
        final[r] = _noisy_or([v for k, v in d.items() if k != "logs"] + [logs * (1.0 - expl)])
        if worst_dep and expl > 0.5 * _EXPLAIN:
            explained_by[r] = worst_dep

    ranked = sorted(((r, v) for r, v in final.items() if v > 0), key=lambda kv: -kv[1])
    leaders = {r for r, _ in ranked[:EVIDENCE_FOR_TOP]} if not quick else set()
    extra: list[Finding] = []
    if leaders:
        m = obs.metrics
        focused = dataclasses.replace(obs, metrics=m[m["resource"].isin(leaders)] if len(m) else m,
                                      focus=frozenset(leaders))
        _run(EVIDENCE, focused, s, extra, notes)
    findings.extend(extra)
    for f in extra:
        if f.resource in by_res:
            by_res[f.resource].append(f)
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
            affected = sorted((c for c in nx.ancestors(g, r) if own.get(c, 0) > 0), key=lambda c: -own[c])
            if affected:
                path = list(reversed(nx.shortest_path(g, affected[0], r)))
        scored = sorted((f for f in by_res[r] if family(f)), key=_strength, reverse=True)[:4]
        shown = sorted((f for f in by_res[r] if not family(f)), key=lambda f: -f.score)[:3]
        if r in explained_by and fk in (FaultKind.ERROR, FaultKind.LOGIC) and scored and family(scored[0]) == "logs":
            why += f" (may be inherited from {explained_by[r]})"
        hyps.append(Hypothesis(rank=rank, resource=r, fault_kind=fk, confidence=round(min(max(conf, 0.0), 1.0), 3),
                               score=round(sc, 4), why=why, evidence=[f.evidence() for f in scored + shown],
                               path=path))
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
