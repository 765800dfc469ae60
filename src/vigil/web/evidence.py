"""Evidence people would rather look at than read, for one hypothesis of an investigation.

The engine's evidence carries most of it (metric series with baseline statistics, log templates with
counts and sample lines, exemplar trace ids, change events). What it lacks is read from the space's
telemetry through the same source router the investigation used: a chart series for a hypothesis
without metric evidence, log templates mined from the stored lines around the onset, a trace
exemplar through the suspect service, and every change event in the window. What cannot be shown is
said on the page (``notes``) rather than left out silently."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vigil.engine.templates import mask
from vigil.model import EvidenceKind, Hypothesis, Investigation, Topology
from vigil.report.charts import Axis, metric_chart
from vigil.web.svg import bars_svg, timeline_svg, topology_svg, waterfall_svg

log = logging.getLogger("vigil.web")

CHART_W = 560
PRE_S = 1800.0            # charts start at most this long before the onset
MAX_CHARTS = 4
MAX_LOG_LINES = 20_000


@dataclass
class EvidenceView:
    charts: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    templates_from: str = ""
    trace_svg: str = ""
    trace_id: str = ""
    trace_from: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    timeline: str = ""
    graph: str = ""
    other: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _axis(inv: Investigation) -> Axis:
    onset = inv.window.onset.timestamp()
    return Axis(max(inv.window.start.timestamp(), onset - PRE_S), inv.window.end.timestamp(), CHART_W)


def _problems(df: pd.DataFrame, notes: list[str]) -> None:
    for p in (df.attrs or {}).get("problems", []) or []:
        notes.append(f"partial evidence: {p}")


def _fallback_series(sources, space: str, resource: str, axis: Axis, onset: float, notes: list[str]) -> list[dict]:
    """Metric details for the resource's series that moved most at the onset (when the hypothesis
    carries no metric series of its own)."""
    try:
        m = sources.metrics(space, axis.t0, axis.t1, [resource])
    except Exception as exc:        # noqa: BLE001 - a chart is not worth a failed page
        notes.append(f"could not read metrics of {resource}: {type(exc).__name__}")
        return []
    _problems(m, notes)
    out = []
    for name, g in m.groupby("name", sort=False):
        ts, v = g["ts"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float)
        base, inc = v[ts < onset], v[ts >= onset]
        if len(base) < 3 or len(inc) < 1:
            continue
        med = float(np.median(base))
        scale = max(float(np.median(np.abs(base - med))) * 1.4826, 0.05 * abs(med), 1e-9)
        z = float(np.max(np.abs(inc - med))) / scale
        out.append((z, {"metric": str(name), "series": [[float(a), float(b)] for a, b in zip(ts, v, strict=False)],
                        "baseline_median": med, "baseline_scale": scale, "onset": onset,
                        "anomalous_from": onset, "anomalous_to": axis.t1}))
    out.sort(key=lambda x: -x[0])
    return [d | {"title": f"{d['metric']} (from the stored series; deviation {z:.1f} robust scales)"}
            for z, d in out[:3]]


def _mined_templates(sources, space: str, resource: str, inv: Investigation, notes: list[str]) -> list[dict]:
    """Log templates of the resource that appeared, vanished or changed rate at the onset."""
    onset, a, b = inv.window.onset.timestamp(), inv.window.start.timestamp(), inv.window.end.timestamp()
    try:
        lg = sources.logs(space, a, b, [resource], None, MAX_LOG_LINES)
    except Exception as exc:        # noqa: BLE001
        notes.append(f"could not read logs of {resource}: {type(exc).__name__}")
        return []
    _problems(lg, notes)
    if lg.empty:
        return []
    tpl = lg["body"].fillna("").astype(str).map(lambda s: mask(s[:400]))
    after = lg["ts"].to_numpy(dtype=float) >= onset
    dur_b, dur_a = max(onset - a, 1.0), max(b - onset, 1.0)
    rows = []
    for t, idx in tpl.groupby(tpl).groups.items():
        idx = np.asarray([lg.index.get_loc(i) for i in idx])
        n_a = int(after[idx].sum())
        n_b = len(idx) - n_a
        rate_b, rate_a = n_b / dur_b, n_a / dur_a
        change = abs(rate_a - rate_b) / np.sqrt((n_a + n_b) / (dur_a + dur_b) + 1e-9)
        shift = ("new" if n_b == 0 else "more") if rate_a > rate_b else ("gone" if n_a == 0 else "fewer")
        pick = idx[after[idx]] if n_a else idx
        rows.append((change, {"template": str(t)[:300], "before": n_b, "after": n_a, "shift": shift,
                              "sample": str(lg["body"].iloc[pick[0]])[:400]}))
    rows.sort(key=lambda x: -x[0])
    return [r for c, r in rows[:5] if c > 0]


def _exemplar(sources, space: str, hyp: Hypothesis, inv: Investigation, notes: list[str]) -> tuple[str, pd.DataFrame, str]:
    onset, end = inv.window.onset.timestamp(), inv.window.end.timestamp()
    wanted = next((str(e.detail["exemplar_trace"]) for e in hyp.evidence if e.detail.get("exemplar_trace")), "")
    try:
        sp = sources.spans(space, onset - 600.0, end)
    except Exception as exc:        # noqa: BLE001
        notes.append(f"could not read spans: {type(exc).__name__}")
        return "", pd.DataFrame(), ""
    _problems(sp, notes)
    if sp.empty:
        return "", sp, ""
    if wanted and (sp["trace_id"] == wanted).any():
        return wanted, sp[sp["trace_id"] == wanted], "the engine's exemplar of the slowed operation"
    mine = sp[(sp["resource"] == hyp.resource) & (sp["start"] >= onset)]
    if mine.empty:
        return "", sp.iloc[0:0], ""
    # prefer a failed request through the suspect, else its slowest span after the onset
    err = mine[mine["error"].astype(bool)]
    pick = (err if not err.empty else mine).sort_values("duration_ms", ascending=False).iloc[0]
    tid = str(pick["trace_id"])
    why = "a failed request through " if not err.empty else "the slowest request through "
    return tid, sp[sp["trace_id"] == tid], why + f"{hyp.resource} after the onset (from the stored spans)"


def build(sources, space: str, inv: Investigation, hyp: Hypothesis, topo: Topology) -> EvidenceView:
    view = EvidenceView()
    axis = _axis(inv)
    onset = inv.window.onset.timestamp()

    # change events on the shared time axis
    try:
        ch = sources.changes(space, axis.t0 - 1800.0, axis.t1)
        _problems(ch, view.notes)
        view.changes = [{"ts": float(r.ts), "resource": str(r.resource), "kind": str(r.kind),
                         "description": str(r.description), "author": str(r.author)}
                        for r in ch.itertuples(index=False)]
    except Exception as exc:        # noqa: BLE001
        view.notes.append(f"could not read change events: {type(exc).__name__}")
    marks = [(c["ts"], f"{c['kind']} {c['resource']}: {c['description']}") for c in view.changes]
    view.timeline = timeline_svg(axis, [(c["ts"], c["resource"], f"{c['kind']}: {c['description']}")
                                        for c in view.changes], onset)

    # metric charts: the hypothesis' own series first
    seen: set[tuple[str, str]] = set()
    metric_ev = sorted((e for e in hyp.evidence if e.kind is EvidenceKind.METRIC and e.detail.get("series")),
                       key=lambda e: -e.score)
    for e in metric_ev:
        key = (e.resource, str(e.detail.get("metric")))
        if key in seen or len(view.charts) >= MAX_CHARTS:
            continue
        seen.add(key)
        svg = metric_chart(e.detail, axis=axis, changes=marks)
        if svg:
            view.charts.append({"title": e.title, "resource": e.resource, "svg": svg})
    if not view.charts:
        for d in _fallback_series(sources, space, hyp.resource, axis, onset, view.notes):
            svg = metric_chart(d, axis=axis, changes=marks)
            if svg:
                view.charts.append({"title": d["title"], "resource": hyp.resource, "svg": svg})
        if not view.charts:
            view.notes.append(f"no metric series of {hyp.resource} around the onset")

    # log templates: the engine's, else mined from the stored lines
    for e in hyp.evidence:
        samples = e.detail.get("samples") or []
        for i, t in enumerate(e.detail.get("templates") or []):
            view.templates.append({"template": t.get("template", ""), "before": int(t.get("before", 0)),
                                   "after": int(t.get("after", 0)), "shift": t.get("shift", ""),
                                   "sample": samples[i] if i < len(samples) else (samples[0] if samples else "")})
    if view.templates:
        view.templates_from = "the engine's log evidence"
    else:
        view.templates = _mined_templates(sources, space, hyp.resource, inv, view.notes)
        view.templates_from = f"the stored log lines of {hyp.resource}" if view.templates else ""
        if not view.templates:
            view.notes.append(f"no log lines of {hyp.resource} changed at the onset")
    for t in view.templates:
        t["bars"] = bars_svg(t["before"], t["after"])
    view.templates = view.templates[:6]

    # a trace exemplar as a waterfall
    tid, spans, why = _exemplar(sources, space, hyp, inv, view.notes)
    if tid and not spans.empty:
        view.trace_id, view.trace_from = tid, why
        view.trace_svg = waterfall_svg(spans, highlight=hyp.resource)
    else:
        view.notes.append(f"no trace through {hyp.resource} after the onset")

    # the propagation path on the topology: the path and its neighbours
    path = list(hyp.path) or [hyp.resource]
    near = set(path)
    for e in topo.edges:
        if e.src in path or e.dst in path:
            near |= {e.src, e.dst}
    health = {n: "affected" for n in path[1:]} | {path[0]: "suspect"}
    view.graph = topology_svg(topo, health, path, focus=near,
                              label=f"propagation path {' to '.join(path)} on the topology")

    # the rest of the evidence, as text
    view.other = [{"kind": e.kind.value, "resource": e.resource, "title": e.title, "score": e.score,
                   "category": str(e.detail.get("category", ""))} for e in hyp.evidence]
    return view
