"""Evidence people would rather look at than read, for one hypothesis of an investigation, drawn from
what the investigation saved: the engine's evidence (metric series with baseline statistics, log templates
with counts and sample lines, exemplar trace ids, change events) and its views (``evidence-view``: the
series that moved most, mined log templates, an exemplar trace as rows, the change events, the
neighbourhood on the topology). No source is read here: the console, the reports and MCP show the same
evidence. What cannot be shown is said on the page (``notes``) rather than left out silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vigil.model import Edge, EdgeKind, EdgeSource, EvidenceKind, Hypothesis, Investigation, Topology
from vigil.report.charts import Axis, metric_chart
from vigil.web.svg import bars_svg, timeline_svg, topology_svg, waterfall_svg

CHART_W = 560
PRE_S = 1800.0            # charts start at most this long before the onset
MAX_CHARTS = 4


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


def _views(hyp: Hypothesis, category: str) -> list:
    return [e for e in hyp.evidence if e.kind is EvidenceKind.VIEW and e.detail.get("category") == category]


def _edge(d: dict[str, Any]) -> Edge | None:
    try:
        return Edge(src=str(d["src"]), dst=str(d["dst"]), kind=EdgeKind(d.get("kind", "calls")),
                    source=EdgeSource(d.get("source", "traces")))
    except (KeyError, ValueError):
        return None


def build(inv: Investigation, hyp: Hypothesis) -> EvidenceView:
    view = EvidenceView()
    axis = _axis(inv)
    onset = inv.window.onset.timestamp()
    saved = any(e.kind is EvidenceKind.VIEW for e in hyp.evidence)
    if not saved:
        view.notes.append(f"no saved evidence view for {hyp.resource} (it was not among the leading candidates, or "
                          "the investigation ran before views were saved): the engine's evidence only")

    # change events on the shared time axis: the saved timeline, else the engine's change evidence
    timeline = next((e.detail.get("changes") or [] for e in _views(hyp, "changes")), None)
    if timeline is None:
        timeline = [{"ts": float(e.detail.get("first_ts") or onset), "resource": e.resource,
                     "kind": str(e.detail.get("kind", "change")), "description": e.title,
                     "author": str(e.detail.get("author", ""))}
                    for e in hyp.evidence if e.kind is EvidenceKind.CHANGE]
    view.changes = [{"ts": float(c.get("ts", onset)), "resource": str(c.get("resource", "")),
                     "kind": str(c.get("kind", "")), "description": str(c.get("description", "")),
                     "author": str(c.get("author", ""))} for c in timeline]
    marks = [(c["ts"], f"{c['kind']} {c['resource']}: {c['description']}") for c in view.changes]
    view.timeline = timeline_svg(axis, [(c["ts"], c["resource"], f"{c['kind']}: {c['description']}")
                                        for c in view.changes], onset)

    # metric charts: the hypothesis' own series first, then the saved views' series that moved most
    seen: set[tuple[str, str]] = set()
    metric_ev = sorted((e for e in hyp.evidence if e.kind is EvidenceKind.METRIC and e.detail.get("series")),
                       key=lambda e: -e.score) + _views(hyp, "chart")
    for e in metric_ev:
        key = (e.resource, str(e.detail.get("metric")))
        if key in seen or len(view.charts) >= MAX_CHARTS or not e.detail.get("series"):
            continue
        seen.add(key)
        svg = metric_chart(e.detail, axis=axis, changes=marks)
        if svg:
            view.charts.append({"title": e.title, "resource": e.resource, "svg": svg})
    if not view.charts:
        view.notes.append(f"no metric series of {hyp.resource} around the onset")

    # log templates: the engine's, else the saved view's (mined from the candidate's lines)
    for src in ([e for e in hyp.evidence if e.kind is not EvidenceKind.VIEW], _views(hyp, "templates")):
        for e in src:
            samples = e.detail.get("samples") or []
            for i, t in enumerate(e.detail.get("templates") or []):
                view.templates.append({"template": t.get("template", ""), "before": int(t.get("before", 0)),
                                       "after": int(t.get("after", 0)), "shift": t.get("shift", ""),
                                       "sample": samples[i] if i < len(samples) else (samples[0] if samples else "")})
        if view.templates:
            view.templates_from = "the engine's log evidence" if src and src[0].kind is not EvidenceKind.VIEW \
                else f"the log lines of {hyp.resource} the investigation read"
            break
    if not view.templates:
        view.notes.append(f"no log lines of {hyp.resource} changed at the onset")
    for t in view.templates:
        t["bars"] = bars_svg(t["before"], t["after"])
    view.templates = view.templates[:6]

    # a trace exemplar as a waterfall
    tr = next(iter(_views(hyp, "trace")), None)
    spans = pd.DataFrame(tr.detail.get("spans") or []) if tr is not None else pd.DataFrame()
    if tr is not None and not spans.empty:
        view.trace_id, view.trace_from = str(tr.detail.get("trace_id", "")), str(tr.detail.get("why", ""))
        view.trace_svg = waterfall_svg(spans, highlight=hyp.resource)
    else:
        view.notes.append(f"no trace through {hyp.resource} after the onset")

    # the propagation path on the topology: the path and its neighbours
    path = list(hyp.path) or [hyp.resource]
    edges = [x for e in _views(hyp, "neighbourhood") for x in map(_edge, e.detail.get("edges") or []) if x]
    topo = Topology(edges=edges)
    near = set(path)
    for e in topo.edges:
        if e.src in path or e.dst in path:
            near |= {e.src, e.dst}
    health = {n: "affected" for n in path[1:]} | {path[0]: "suspect"}
    view.graph = topology_svg(topo, health, path, focus=near,
                              label=f"propagation path {' to '.join(path)} on the topology")

    # the rest of the evidence, as text
    view.other = [{"kind": e.kind.value, "resource": e.resource, "title": e.title, "score": e.score,
                   "category": str(e.detail.get("category", ""))} for e in hyp.evidence
                  if e.kind is not EvidenceKind.VIEW]
    return view
