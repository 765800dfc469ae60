"""What people look at for each leading candidate, worked out once from the observation the investigation
analysed and saved with its hypotheses (``EvidenceKind.VIEW``), so that the console, the reports and MCP
show the same evidence and the console reads no source to draw it:

- ``chart``: the candidate's series that moved most at the onset (robust z against the part before it),
  around the onset, with the baseline's median and spread and the anomalous segment;
- ``templates``: its log templates (the run's one Drain miner) that appeared, vanished or changed rate at the
  onset, with a sample line;
- ``trace``: an exemplar trace through it after the onset (a failed request, else its slowest), as rows;
- ``changes``: every change event the observation holds (the timeline on the charts' time axis);
- ``neighbourhood``: the edges around it and its callers (the propagation path on the topology).

Evidence for people, never scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine.findings import (
    ChangeTimeline,
    Finding,
    LogShift,
    Neighbourhood,
    SeriesChart,
    TemplateCount,
    TraceExemplar,
)
from vigil.engine.prepared import Prepared
from vigil.model import EvidenceKind


@dataclass(frozen=True)
class Config:
    pre_s: float = 1800.0           # charts start at most this long before the onset
    charts: int = 3                 # series charted per candidate
    chart_points: int = 240         # points kept per chart
    templates: int = 5              # log templates per candidate
    max_log_lines: int = 20_000     # lines of one candidate mined at most
    trace_spans: int = 80           # spans of the exemplar trace kept
    changes: int = 50               # change events kept
    caller_depth: int = 4           # callers this many calls away are in the neighbourhood
    edges: int = 150                # edges kept
    z_cap: float = 50.0             # a deviation beyond this is "certainly moved" (a flat series that moves)


class Views:
    """Charts, log templates, an exemplar trace, the changes and the neighbourhood of each leading
    candidate, saved with the investigation (evidence for people; not scored)."""

    name = "evidence-view"
    family = "evidence"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.focus else "no leading candidates to describe"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        out: list[Finding] = []
        changes = _changes(p, config)
        for r in sorted(p.focus or ()):
            out += _charts(p, r, config)
            out += _templates(p, r, config)
            out += _trace(p, r, config)
            out += _neighbourhood(p, r, config)
            if changes is not None:
                out.append(Finding(r, "evidence", "changes", EvidenceKind.VIEW, 0.0,
                                   f"{len(changes.changes)} change events around the onset", detail=changes))
        return out


def _charts(p: Prepared, r: str, c: Config) -> list[Finding]:
    m = p.metrics
    if m.empty:
        return []
    m = m[m["resource"] == r]
    scored = []
    for name, g in m.groupby("name", sort=False):
        ts, v = g["ts"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float)
        order = np.argsort(ts)
        ts, v = ts[order], v[order]
        base, inc = v[ts < p.onset], v[ts >= p.onset]
        if len(base) < 3 or len(inc) < 1:
            continue
        med = float(np.median(base))
        scale = max(float(np.median(np.abs(base - med))) * 1.4826, 0.05 * abs(med), 1e-9)
        i = int(np.argmax(np.abs(inc - med)))
        z = min(float(abs(inc[i] - med)) / scale, c.z_cap)
        near = ts >= p.onset - c.pre_s
        series = [[float(a), float(b)] for a, b in zip(ts[near][-c.chart_points:], v[near][-c.chart_points:],
                                                         strict=True)]
        scored.append((z, str(name), SeriesChart(metric=str(name), baseline_median=med, baseline_scale=scale,
                                                 peak_value=float(inc[i]), z=z, n_baseline=len(base),
                                                 n_incident=len(inc), series=series, onset=p.onset,
                                                 anomalous_from=p.onset, anomalous_to=float(ts[-1]))))
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [Finding(r, "evidence", "chart", EvidenceKind.VIEW, 0.0,
                    f"{name}: the series of {r} that moved most at the onset (deviation "
                    f"{'at least ' if z >= c.z_cap else ''}{z:.1f} robust scales)",
                    detail=d) for z, name, d in scored[:c.charts]]


def _templates(p: Prepared, r: str, c: Config) -> list[Finding]:
    """Templates from the run's one Drain miner (the same templates the log and pattern analyzers read)."""
    lg = p.logs
    if lg.empty:
        return []
    rows = np.flatnonzero(lg["resource"].to_numpy(object) == r)[-c.max_log_lines:]
    if len(rows) == 0:
        return []
    ids = p.template_ids(rows)
    ts = lg["ts"].to_numpy(dtype=float)[rows]
    bodies = lg["body"].to_numpy(object)[rows]
    a, b = float(ts.min()), float(ts.max())
    after = ts >= p.onset
    dur_b, dur_a = max(p.onset - a, 1.0), max(b - p.onset, 1.0)
    out = []
    for t in np.unique(ids):
        idx = np.flatnonzero(ids == t)
        n_a = int(after[idx].sum())
        n_b = len(idx) - n_a
        rate_b, rate_a = n_b / dur_b, n_a / dur_a
        change = abs(rate_a - rate_b) / np.sqrt((n_a + n_b) / (dur_a + dur_b) + 1e-9)
        if change <= 0:
            continue
        shift = ("new" if n_b == 0 else "more") if rate_a > rate_b else ("gone" if n_a == 0 else "fewer")
        pick = idx[after[idx]] if n_a else idx
        text = p.templater.text(int(t)) if t >= 0 else str(bodies[pick[0]])
        out.append((change, TemplateCount(template=str(text)[:300], shift=shift, before=n_b, after=n_a),
                    str(bodies[pick[0]] or "")[:400]))
    if not out:
        return []
    out.sort(key=lambda x: (-x[0], x[1].template))
    out = out[:c.templates]
    detail = LogShift(templates=[t for _, t, _ in out], samples=[s for _, _, s in out],
                      lines_before=int((~after).sum()), lines_after=int(after.sum()))
    return [Finding(r, "evidence", "templates", EvidenceKind.VIEW, 0.0,
                    f"{len(out)} log templates of {r} changed at the onset", detail=detail)]


def _trace(p: Prepared, r: str, c: Config) -> list[Finding]:
    sp = p.spans
    if sp.empty:
        return []
    mine = sp[(sp["resource"] == r) & (sp["start"].astype(float) >= p.onset)]
    if mine.empty:
        return []
    err = mine[mine["error"].astype(bool)]
    pick = (err if not err.empty else mine).sort_values("duration_ms", ascending=False).iloc[0]
    tid = str(pick["trace_id"])
    why = ("a failed request through " if not err.empty else "the slowest request through ") + f"{r} after the onset"
    tr = sp[sp["trace_id"] == tid].sort_values("start").head(c.trace_spans)
    rows = [{"trace_id": tid, "span_id": str(x.span_id), "parent_id": str(x.parent_id or ""),
             "resource": str(x.resource), "operation": str(x.operation), "start": float(x.start),
             "duration_ms": float(x.duration_ms), "error": bool(x.error)}
            for x in tr[["span_id", "parent_id", "resource", "operation", "start", "duration_ms",
                         "error"]].itertuples(index=False)]
    return [Finding(r, "evidence", "trace", EvidenceKind.VIEW, 0.0, f"exemplar trace {tid}: {why}",
                    detail=TraceExemplar(trace_id=tid, why=why, spans=rows))]


def _changes(p: Prepared, c: Config) -> ChangeTimeline | None:
    ch = p.changes
    if ch is None or len(ch) == 0:
        return None
    ch = ch.sort_values("ts").tail(c.changes)
    return ChangeTimeline(changes=[{"ts": float(x.ts), "resource": str(x.resource), "kind": str(x.kind),
                                    "description": str(x.description)[:300], "author": str(x.author)[:120]}
                                   for x in ch[["ts", "resource", "kind", "description", "author"]]
                                   .itertuples(index=False)])


def _neighbourhood(p: Prepared, r: str, c: Config) -> list[Finding]:
    edges: dict[tuple[str, str], dict[str, str]] = {}
    for e in p.topology.edges:
        edges.setdefault((e.src, e.dst), {"src": e.src, "dst": e.dst, "kind": e.kind.value, "source": e.source.value})
    learned = p.edges
    if isinstance(learned, pd.DataFrame) and len(learned):
        for x in learned[["src", "dst"]].itertuples(index=False):
            edges.setdefault((str(x.src), str(x.dst)), {"src": str(x.src), "dst": str(x.dst), "kind": "calls",
                                                        "source": "traces"})
    if not edges:
        return []
    callers: dict[str, set[str]] = {}
    for a, b in edges:
        callers.setdefault(b, set()).add(a)
    near, frontier = {r}, {r}
    for _ in range(c.caller_depth):
        frontier = {a for n in frontier for a in callers.get(n, ())} - near
        near |= frontier
    keep = [e for (a, b), e in edges.items() if a in near or b in near]
    keep.sort(key=lambda e: (not (e["src"] in near and e["dst"] in near), e["src"], e["dst"]))
    keep = keep[:c.edges]
    if not keep:
        return []
    return [Finding(r, "evidence", "neighbourhood", EvidenceKind.VIEW, 0.0,
                    f"{len(keep)} edges around {r} and its callers", detail=Neighbourhood(edges=keep))]


def attach(hypotheses, findings: list[Finding]) -> None:
    """Put each hypothesis' views after its evidence (once: the ranking may have shown some already)."""
    for h in hypotheses:
        views = [f.evidence() for f in findings if f.signal is EvidenceKind.VIEW and f.resource == h.resource]
        h.evidence = [e for e in h.evidence if e.kind is not EvidenceKind.VIEW] + views
