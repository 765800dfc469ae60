"""Server-generated SVG for the console: the topology graph (layered left to right, callers before
callees), a trace waterfall and the change-event timeline. No layout library and no script: the
page stays readable with JavaScript off and works offline. Everything from data is escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import networkx as nx
import pandas as pd

from vigil.model import Topology
from vigil.report.charts import Axis, hms

HEALTH = ("suspect", "affected", "anomalous", "ok", "unknown")
E = html.escape


def _short(name: str, n: int = 26) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Column of each node: the longest call chain leading to it (cycles collapsed into one column)."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a, b in edges if a != b)
    cond = nx.condensation(g)
    depth: dict[int, int] = {}
    for c in nx.topological_sort(cond):
        preds = list(cond.predecessors(c))
        depth[c] = 1 + max(depth[p] for p in preds) if preds else 0
    return {n: depth[cond.graph["mapping"][n]] for n in nodes}


GRAPH_LIMIT = 120          # services drawn at most: a graph of thousands is neither readable nor quick
_SEVERITY = {"suspect": 0, "affected": 1, "anomalous": 2}


def graph_focus(topo: Topology, health: dict[str, str], path: Sequence[str] = (),
                limit: int = GRAPH_LIMIT) -> set[str] | None:
    """The services worth drawing when there are more than ``limit`` (None when all fit): the root cause
    and its propagation path, the other suspicious services, their direct callers and callees, then the
    most connected services. Linear in the number of services and edges."""
    nodes = {r.name for r in topo.resources} | {e.src for e in topo.edges} | {e.dst for e in topo.edges}
    if len(nodes) <= limit:
        return None
    degree: dict[str, int] = {}
    neighbours: dict[str, set[str]] = {}
    for e in topo.edges:
        if e.src == e.dst:
            continue
        degree[e.src] = degree.get(e.src, 0) + 1
        degree[e.dst] = degree.get(e.dst, 0) + 1
        neighbours.setdefault(e.src, set()).add(e.dst)
        neighbours.setdefault(e.dst, set()).add(e.src)
    keep: list[str] = []
    seen: set[str] = set()

    def add(names: Iterable[str]) -> None:
        for n in names:
            if len(keep) >= limit:
                return
            if n in nodes and n not in seen:
                seen.add(n)
                keep.append(n)

    add(path)
    flagged = sorted((n for n, h in health.items() if h in _SEVERITY), key=lambda n: (_SEVERITY[health[n]], n))
    add(flagged)
    for n in list(keep):
        add(sorted(neighbours.get(n, ()), key=lambda m: (-degree.get(m, 0), m)))
    add(sorted(nodes, key=lambda m: (-degree.get(m, 0), m)))
    return set(keep)


def topology_svg(topo: Topology, health: dict[str, str] | None = None, path: Sequence[str] = (),
                 focus: Iterable[str] | None = None, label: str = "service topology") -> str:
    """The services and their edges. ``health`` colours nodes; ``path`` (cause first) is drawn
    highlighted; ``focus`` limits the graph to those nodes (e.g. the path and its neighbours)."""
    health = health or {}
    nodes = sorted({r.name for r in topo.resources} | {e.src for e in topo.edges} | {e.dst for e in topo.edges})
    if focus is not None:
        keep = set(focus)
        nodes = [n for n in nodes if n in keep]
    kept = set(nodes)
    edges: dict[tuple[str, str], list[str]] = {}
    for e in topo.edges:
        if e.src in kept and e.dst in kept:
            edges.setdefault((e.src, e.dst), []).append(f"{e.kind.value} from {e.source.value}")
    if not nodes:
        return ""
    layer = _layers(nodes, list(edges))
    cols: dict[int, list[str]] = {}
    for n in nodes:
        cols.setdefault(layer[n], []).append(n)
    # order each column by the mean row of its callers (fewer crossings), then by name
    callers: dict[str, list[str]] = {}
    for a, b in edges:
        callers.setdefault(b, []).append(a)
    row: dict[str, float] = {}
    for c in sorted(cols):
        def key(n: str) -> tuple[float, str]:
            ps = [row[a] for a in callers.get(n, ()) if a in row]
            return (sum(ps) / len(ps) if ps else 1e9, n)
        cols[c].sort(key=key)
        for i, n in enumerate(cols[c]):
            row[n] = i
    colw, rowh, nodew, nodeh, margin = 230, 40, 190, 28, 12
    height = max(len(v) for v in cols.values()) * rowh + 2 * margin
    width = (max(cols) + 1) * colw + 2 * margin - (colw - nodew)
    pos = {}
    for c, ns in cols.items():
        offset = (height - 2 * margin - len(ns) * rowh) / 2
        for i, n in enumerate(ns):
            pos[n] = (margin + c * colw, margin + offset + i * rowh)
    on_path = {(path[i], path[i + 1]) for i in range(len(path) - 1)}
    on_path |= {(b, a) for a, b in on_path}
    parts = [f'<svg viewBox="0 0 {width} {height:.0f}" class="topo" role="img" aria-label="{E(label)}" '
             f'width="{width}" height="{height:.0f}">',
             '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/></marker></defs>']
    for (a, b), how in sorted(edges.items(), key=lambda kv: (kv[0] in on_path, kv[0])):
        (ax, ay), (bx, by) = pos[a], pos[b]
        x1, y1 = ax + nodew, ay + nodeh / 2
        x2, y2 = bx, by + nodeh / 2
        if layer[b] <= layer[a]:          # same column or a back edge: loop around the right side
            x2 = bx + nodew
            d = f"M{x1:.0f},{y1:.0f} C{x1 + 40:.0f},{y1:.0f} {x2 + 40:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        else:
            mid = (x1 + x2) / 2
            d = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        src_kinds = " ".join(sorted({h.split(" from ")[1] for h in how}))
        cls = "edge path" if (a, b) in on_path else "edge"
        parts.append(f'<path d="{d}" class="{cls}" data-src="{E(src_kinds)}" marker-end="url(#arrow)">'
                     f'<title>{E(a)} → {E(b)}: {E("; ".join(how))}</title></path>')
    place = {n: i for i, n in reversed(list(enumerate(path)))}
    for n in nodes:
        x, y = pos[n]
        h = health.get(n, "unknown")
        cls = f"node {h}" + (" onpath" if n in place else "")
        rank = f" (#{place[n] + 1} on the propagation path)" if n in place else ""
        parts.append(f'<g class="{cls}" data-service="{E(n)}"><title>{E(n)}: {E(h)}{E(rank)}</title>'
                     f'<rect x="{x}" y="{y:.0f}" width="{nodew}" height="{nodeh}" rx="6"/>'
                     f'<text x="{x + 10}" y="{y + 18:.0f}">{E(_short(n))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def waterfall_svg(spans: pd.DataFrame, highlight: str = "", width: int = 900, max_rows: int = 40) -> str:
    """One trace as a waterfall: spans in call order (parents before children), bars placed by start
    and duration, the suspect service's spans highlighted and failed spans marked."""
    if spans.empty:
        return ""
    sp = spans.sort_values("start")
    by_id = {str(r.span_id): r for r in sp.itertuples(index=False)}
    children: dict[str, list] = {}
    roots = []
    for r in sp.itertuples(index=False):
        parent = str(r.parent_id or "")
        if parent and parent in by_id and parent != str(r.span_id):
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    ordered: list[tuple[int, object]] = []
    seen: set[str] = set()

    def walk(r, depth: int) -> None:
        sid = str(r.span_id)
        if sid in seen or len(ordered) >= max_rows:
            return
        seen.add(sid)
        ordered.append((depth, r))
        for c in children.get(sid, []):
            walk(c, depth + 1)

    for r in roots:
        walk(r, 0)
    t0 = min(float(r.start) for _, r in ordered)
    t1 = max(float(r.start) + float(r.duration_ms) / 1000.0 for _, r in ordered)
    span_s = max(t1 - t0, 1e-3)
    label_w, rowh, top = 330, 20, 22
    plot = width - label_w - 10
    height = top + len(ordered) * rowh + 8
    parts = [f'<svg viewBox="0 0 {width} {height}" class="waterfall" role="img" width="{width}" height="{height}" '
             f'aria-label="trace waterfall, {len(ordered)} spans over {span_s * 1000:.0f} ms">',
             f'<text x="{label_w}" y="14">0 ms</text>'
             f'<text x="{width - 10}" y="14" text-anchor="end">{span_s * 1000:.0f} ms</text>']
    for i, (depth, r) in enumerate(ordered):
        y = top + i * rowh
        x = label_w + (float(r.start) - t0) / span_s * plot
        w = max(float(r.duration_ms) / 1000.0 / span_s * plot, 1.5)
        cls = "bar" + (" hl" if str(r.resource) == highlight else "") + (" err" if bool(r.error) else "")
        name = f"{r.resource} {r.operation}"
        parts.append(f'<g class="{cls}"><title>{E(str(r.resource))} · {E(str(r.operation))} · '
                     f'{float(r.duration_ms):.1f} ms{" · error" if bool(r.error) else ""}</title>'
                     f'<text x="{4 + min(depth, 12) * 10}" y="{y + 14}">{E(_short(name, 44 - min(depth, 12)))}</text>'
                     f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{rowh - 6}" rx="2"/></g>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(axis: Axis, changes: Sequence[tuple[float, str, str]], onset: float | None,
                 height: int = 54) -> str:
    """Change events (time, resource, text) on the same time axis as the metric charts."""
    w, pad = axis.width, axis.pad
    parts = [f'<svg viewBox="0 0 {w} {height}" width="{w}" height="{height}" class="chart timeline" role="img" '
             f'aria-label="{len(changes)} change events around the onset">',
             f'<line x1="{pad}" x2="{w - pad}" y1="{height - 22}" y2="{height - 22}" class="axis"/>']
    if onset is not None and axis.inside(onset):
        parts.append(f'<line x1="{axis.x(onset):.1f}" x2="{axis.x(onset):.1f}" y1="4" y2="{height - 22}" '
                     f'class="onset"><title>onset {hms(onset)}</title></line>')
    for t, res, text in changes:
        if axis.inside(t):
            x = axis.x(t)
            parts.append(f'<g class="change-mark"><title>{hms(t)} {E(res)}: {E(text)}</title>'
                         f'<line x1="{x:.1f}" x2="{x:.1f}" y1="8" y2="{height - 22}" class="change"/>'
                         f'<circle cx="{x:.1f}" cy="10" r="5" class="change-dot"/></g>')
    parts.append(f'<text x="{pad}" y="{height - 6}">{hms(axis.t0)}</text>'
                 f'<text x="{w - pad}" y="{height - 6}" text-anchor="end">{hms(axis.t1)}</text></svg>')
    return "".join(parts)


def bars_svg(before: int, after: int, width: int = 140) -> str:
    """Two small bars: a log template's count before and after the onset."""
    top = max(before, after, 1)
    wb, wa = before / top * (width - 40), after / top * (width - 40)
    return (f'<svg viewBox="0 0 {width} 26" width="{width}" height="26" class="bars" role="img" '
            f'aria-label="{before} before, {after} after">'
            f'<rect x="0" y="2" width="{max(wb, 1):.1f}" height="9" class="before"/>'
            f'<text x="{wb + 4:.1f}" y="10">{before}</text>'
            f'<rect x="0" y="14" width="{max(wa, 1):.1f}" height="9" class="after"/>'
            f'<text x="{wa + 4:.1f}" y="22">{after}</text></svg>')
