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
    max_log_lines: int = 20_000     # lines of one candidate mined at most...
    log_before_s: float = 900.0     # ...from this long before the onset...
    log_after_s: float = 300.0      # ...to this long after it
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
        charts = _charts(p, config)
        traces = _traces(p, config)
        for r in sorted(p.focus or ()):
            out += charts.get(r, [])
            out += _templates(p, r, config)
            out += traces.get(r, [])
            out += _neighbourhood(p, r, config)
            if changes is not None:
                out.append(Finding(r, "evidence", "changes", EvidenceKind.VIEW, 0.0,
                                   f"{len(changes.changes)} change events around the onset", detail=changes))
        return out


def _charts(p: Prepared, c: Config) -> dict[str, list[Finding]]:
    """Every candidate's series scored at once (medians by group), then the strongest few charted."""
    m = p.metrics
    if m.empty:
        return {}
    m = m[m["resource"].isin(p.focus)]
    if m.empty:
        return {}
    m.attrs = {}                    # a source's notes would be deep-copied by every step below
    key = ["resource", "name"]
    before = m[m["ts"] < p.onset]
    after = m[m["ts"] >= p.onset]
    stats = before.groupby(key, sort=False)["value"].agg(["median", "size"])
    stats = stats[stats["size"] >= 3]
    if stats.empty or after.empty:
        return {}
    dev = before.join(stats["median"], on=key)
    stats["mad"] = (dev["value"] - dev["median"]).abs().groupby([dev["resource"], dev["name"]], sort=False).median()
    stats["scale"] = np.maximum.reduce([stats["mad"].to_numpy() * 1.4826, 0.05 * stats["median"].abs().to_numpy(),
                                        np.full(len(stats), 1e-9)])
    stats["n_after"] = after.groupby(key, sort=False).size()
    inc = after.join(stats[["median", "scale", "size", "n_after"]], on=key, how="inner")
    if inc.empty:
        return {}
    inc = inc.assign(dz=(inc["value"] - inc["median"]).abs() / inc["scale"])
    peak = inc.loc[inc.groupby(key, sort=False)["dz"].idxmax()]
    peak = peak.assign(z=np.minimum(peak["dz"].to_numpy(), c.z_cap)).sort_values(["resource", "z", "name"],
                                                                                 ascending=[True, False, True])
    picked = peak.groupby("resource", sort=False).head(c.charts)
    out: dict[str, list[Finding]] = {}
    want = set(zip(picked["resource"], picked["name"], strict=True))
    series = {k: g for k, g in m[m["ts"] >= p.onset - c.pre_s].groupby(key, sort=False) if k in want}
    for x in picked.itertuples(index=False):
        r, name, z = str(x.resource), str(x.name), float(x.z)
        g = series.get((x.resource, x.name))
        g = g.sort_values("ts").tail(c.chart_points) if g is not None else g
        pts = [list(ab) for ab in zip(g["ts"].astype(float).tolist(), g["value"].astype(float).tolist(),
                                      strict=True)] if g is not None else []
        d = SeriesChart(metric=name, baseline_median=float(x.median), baseline_scale=float(x.scale),
                        peak_value=float(x.value), z=z, n_baseline=int(x.size),
                        n_incident=int(x.n_after), series=pts, onset=p.onset,
                        anomalous_from=p.onset, anomalous_to=float(pts[-1][0]) if pts else p.onset)
        out.setdefault(r, []).append(Finding(
            r, "evidence", "chart", EvidenceKind.VIEW, 0.0,
            f"{name}: the series of {r} that moved most at the onset (deviation "
            f"{'at least ' if z >= c.z_cap else ''}{z:.1f} robust scales)", detail=d))
    return out


def _templates(p: Prepared, r: str, c: Config) -> list[Finding]:
    """Templates from the run's one Drain miner (the same templates the log and pattern analyzers read)."""
    lg = p.logs
    if lg.empty:
        return []
    ts = lg["ts"].to_numpy(dtype=float)
    near = (ts >= p.onset - c.log_before_s) & (ts <= p.onset + c.log_after_s)
    rows = np.flatnonzero(near & (lg["resource"].to_numpy(object) == r))[-c.max_log_lines:]
    if len(rows) == 0:
        return []
    ids = p.template_ids(rows)
    ts = ts[rows]
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


def _traces(p: Prepared, c: Config) -> dict[str, list[Finding]]:
    """One exemplar trace per candidate: a failed request through it after the onset, else its slowest."""
    sp = p.spans
    if sp.empty:
        return {}
    mine = sp[sp["resource"].isin(p.focus) & (sp["start"].to_numpy(dtype=float) >= p.onset)]
    if mine.empty:
        return {}
    mine.attrs = {}
    mine = mine.assign(failed=mine["error"].astype(bool))
    pick = mine.sort_values(["resource", "failed", "duration_ms"], ascending=[True, False, False]) \
        .drop_duplicates("resource")
    tids = set(pick["trace_id"])
    rows_of = {t: g for t, g in sp[sp["trace_id"].isin(tids)].groupby("trace_id", sort=False)}
    out: dict[str, list[Finding]] = {}
    for x in pick.itertuples(index=False):
        r, tid = str(x.resource), str(x.trace_id)
        why = ("a failed request through " if x.failed else "the slowest request through ") + f"{r} after the onset"
        tr = rows_of[x.trace_id].sort_values("start").head(c.trace_spans)
        rows = [{"trace_id": tid, "span_id": str(s.span_id), "parent_id": str(s.parent_id or ""),
                 "resource": str(s.resource), "operation": str(s.operation), "start": float(s.start),
                 "duration_ms": float(s.duration_ms), "error": bool(s.error)}
                for s in tr[["span_id", "parent_id", "resource", "operation", "start", "duration_ms",
                             "error"]].itertuples(index=False)]
        out[r] = [Finding(r, "evidence", "trace", EvidenceKind.VIEW, 0.0, f"exemplar trace {tid}: {why}",
                          detail=TraceExemplar(trace_id=tid, why=why, spans=rows))]
    return out


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
