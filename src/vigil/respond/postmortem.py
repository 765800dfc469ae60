"""The post-incident report: the timeline (alert, onset, changes, the investigation, actions, recovery),
the impact over the topology, the root cause with its evidence charts, the actions taken and the
recommendations; as Markdown, self-contained HTML (inline CSS and SVG, nothing fetched) and PDF
(``fpdf2``: no browser needed). Telemetry text is escaped for each format."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import networkx as nx

from vigil.model import (
    EdgeKind,
    Hypothesis,
    HypothesisState,
    Investigation,
    JournalEntry,
    JournalKind,
    Topology,
)
from vigil.report.charts import metric_chart
from vigil.respond.cause import Cause, from_journal
from vigil.respond.spec import MitigationSpec, md, to_markdown

FORMATS = ("md", "html", "pdf", "json")


@dataclass
class Event:
    ts: float
    kind: str      # alert | onset | change | investigation | action | recovery | note
    text: str


@dataclass
class PostmortemData:
    investigation: Investigation
    hypotheses: list[Hypothesis]
    journal: list[JournalEntry]
    cause: Cause | None
    specs: list[MitigationSpec]
    actions: list[dict[str, Any]]
    timeline: list[Event]
    impact: list[tuple[str, str]]          # (service, how it was affected)
    recommendations: list[str] = field(default_factory=list)


def _ts(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt else None


def _impact(top: Hypothesis | None, hyps: list[Hypothesis], topo: Topology) -> list[tuple[str, str]]:
    if top is None:
        return []
    g = nx.DiGraph()
    g.add_edges_from((e.src, e.dst) for e in topo.edges if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON))
    out = [(top.resource, f"root cause ({top.fault_kind.value})")]
    anomalous = {h.resource: h for h in hyps}
    seen = {top.resource}
    for r in top.path[1:]:
        if r not in seen:
            out.append((r, "on the propagation path" + (f" ({anomalous[r].fault_kind.value} seen)" if r in anomalous
                                                        else "")))
            seen.add(r)
    if top.resource in g:
        for r in sorted(nx.ancestors(g, top.resource)):
            if r not in seen:
                out.append((r, "depends on it" + (" (anomalous too)" if r in anomalous else " (no anomaly seen)")))
                seen.add(r)
    return out


def gather(service: Any, space: str, inv_id: str) -> PostmortemData:
    st = service.state
    inv = st.get_investigation(inv_id, space_id=space)
    hyps = st.hypotheses(inv.id)
    journal = st.journal(inv.id)
    live = [h for h in hyps if h.state is not HypothesisState.DISCARDED]
    top = live[0] if live else None
    causes = from_journal(journal)
    cause = causes.get(top.resource) if top else None
    specs = service.specs(space, inv.id, 3) if live else []
    actions = list(reversed(service.store.list_actions(space, inv.id)))
    try:
        topo = service.sources.topology(space)
    except Exception:   # noqa: BLE001 - a source away: the report still comes out
        topo = Topology()
    tl: list[Event] = []
    a = inv.trigger.alert
    if a is not None:
        tl.append(Event(a.at.timestamp(), "alert", f"alert fired: {a.title or a.id}"))
        for inc in st.list_incidents(space, limit=200):      # the source said the alert resolved
            if inc.investigation_id != inv.id:
                continue
            for al in st.get_incident(inc.id, space).alerts:
                if al.status.value == "resolved":
                    tl.append(Event(al.last_received_at.timestamp(), "alert",
                                    f"alert resolved: {al.title or al.fingerprint} (said {al.source})"))
    tl.append(Event(inv.window.onset.timestamp(), "onset", "onset of the incident (the window's anchor)"))
    onset = inv.window.onset.timestamp()
    try:
        ch = service.sources.changes(space, onset - 3600, onset + 300)
        for r in ch.itertuples(index=False):
            tl.append(Event(float(r.ts), "change", f"{r.kind} of {r.resource}" + (f" by {r.author}" if r.author else "")
                            + f": {r.description}"))
    except Exception:   # noqa: BLE001
        pass
    for e in journal:
        if e.kind in (JournalKind.STARTED, JournalKind.CONCLUSION):
            tl.append(Event(e.ts.timestamp(), "investigation", ("investigation started" if e.kind is JournalKind.STARTED
                                                                else f"conclusion: {e.message}")))
    for act in actions:
        for when, what in ((act["created_at"], f"action proposed by {act['proposed_by']}: {act['summary']}"),
                           (act["approved_at"], f"action approved by {act['approved_by']}: {act['summary']}"),
                           (act["finished_at"], f"action {act['status']}: {act['summary']}"
                            + (f" ({act['error']})" if act["error"] else ""))):
            if when is not None:
                tl.append(Event(when.timestamp(), "action", what))
        rec = act.get("recovery") or {}
        if rec.get("at"):
            tl.append(Event(float(rec["at"]), "recovery", str(rec.get("message", ""))))
    tl.sort(key=lambda e: e.ts)
    recs = []
    if cause is not None:
        recs.append(f"roll out {cause.change.resource} progressively (canary) with an automatic rollback on error "
                    f"rate, and validate the keys a deploy changes ({', '.join(cause.change.keys) or 'its config'}) "
                    "before it ships")
    if a is not None and a.at.timestamp() - onset > 120:
        recs.append(f"the alert fired {int(a.at.timestamp() - onset)} s after the onset: alert on the cause's own "
                    f"signal ({top.resource if top else 'the service'}), not only on the symptom")
    for act in actions:
        if act["status"] == "succeeded" and not (act.get("recovery") or {}).get("recovered"):
            recs.append(f"{act['summary']} ran but recovery was not confirmed: check {act['verify'].get('description', '')}")
    try:
        from vigil.respond import prevention
        for item in prevention.analyse(service, space)[:5]:
            if inv.id in item["investigations"]:
                recs.append(f"{item['category']}: {item['title']}")
    except Exception:   # noqa: BLE001
        pass
    return PostmortemData(inv, hyps, journal, cause, specs, actions, tl, _impact(top, hyps, topo), recs)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(d: PostmortemData, fmt: str) -> bytes:
    if fmt == "md":
        return markdown(d).encode()
    if fmt == "html":
        return html_doc(d).encode()
    if fmt == "pdf":
        return pdf(d)
    if fmt == "json":
        return json.dumps({"investigation": d.investigation.model_dump(mode="json"),
                           "cause": d.cause.model_dump(mode="json") if d.cause else None,
                           "timeline": [{"ts": e.ts, "kind": e.kind, "text": e.text} for e in d.timeline],
                           "impact": [{"service": s, "how": h} for s, h in d.impact],
                           "actions": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in a.items()}
                                       for a in d.actions],
                           "recommendations": d.recommendations,
                           "mitigation": [s.model_dump(mode="json") for s in d.specs]}, indent=2).encode()
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _top(d: PostmortemData) -> Hypothesis | None:
    live = [h for h in d.hypotheses if h.state is not HypothesisState.DISCARDED]
    return live[0] if live else None


def markdown(d: PostmortemData) -> str:
    inv = d.investigation
    top = _top(d)
    out = [f"# Post-incident report: {md(inv.summary or inv.id)}", "",
           f"- Space: {md(inv.space_id)} · investigation {md(inv.id)} · status {inv.status.value}",
           f"- Onset: {inv.window.onset:%Y-%m-%d %H:%M:%S} UTC", "", "## Timeline", "",
           "| time (UTC) | what | |", "|---|---|---|"]
    out += [f"| {_when(e.ts)} | {e.kind} | {md(e.text)[:400]} |" for e in d.timeline]
    out += ["", "## Impact", ""] + ([f"- {md(s)}: {md(h)}" for s, h in d.impact] or ["- (unknown)"])
    out += ["", "## Root cause", ""]
    if d.cause:
        out += [f"{md(d.cause.statement)}", ""]
    if top:
        out += [f"{md(top.resource)} ({top.fault_kind.value}, confidence {top.confidence:.0%}): {md(top.why)}", "",
                "Evidence:", ""] + [f"- {e.kind.value}: {md(e.title)}" for e in top.evidence[:8]]
    out += ["", "## Actions taken", ""]
    out += [f"- {md(a['summary'])}: {a['status']}" + (f", approved by {md(a['approved_by'])}" if a["approved_by"] else "")
            + (f"; recovery: {md(str(a['recovery'].get('message', '')))}" if a.get("recovery") else "")
            for a in d.actions] or ["- none"]
    out += ["", "## Recommendations", ""] + ([f"- {md(r)}" for r in d.recommendations] or ["- none"])
    if d.specs:
        out += ["", "## Mitigation spec", "", to_markdown(d.specs[0])]
    return "\n".join(out) + "\n"


_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1000px;margin:2rem auto;padding:0 1rem;color:#1b1f24}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #8884;text-align:left;
vertical-align:top}.card{background:#f6f8fa;border-radius:8px;padding:1rem;margin:1rem 0}.rc{border-left:6px solid
#cf222e}.k{font-weight:600;white-space:nowrap}svg text{font-size:10px;fill:#57606a}.line{fill:none;stroke:#0969da;
stroke-width:1.6}.base{stroke:#57606a;stroke-dasharray:4 3}.onset{stroke:#cf222e;stroke-width:1.2}.anom{fill:#cf222e;
opacity:.12}.band{fill:#57606a;opacity:.12}.change{stroke:#bf8700;stroke-width:1.5;stroke-dasharray:2 2}"""


def html_doc(d: PostmortemData) -> str:
    e = html.escape
    inv = d.investigation
    top = _top(d)
    b = [f"<h1>Post-incident report</h1><p>{e(inv.summary or inv.id)}</p>",
         f"<p>Space <b>{e(inv.space_id)}</b> · investigation <code>{e(inv.id)}</code> · onset "
         f"{inv.window.onset:%Y-%m-%d %H:%M:%S} UTC</p>", "<h2>Timeline</h2><table><tr><th>time (UTC)</th><th></th>"
         "<th>what</th></tr>"]
    b += [f"<tr><td>{_when(ev.ts)}</td><td class='k'>{e(ev.kind)}</td><td>{e(ev.text)}</td></tr>" for ev in d.timeline]
    b.append("</table><h2>Impact</h2><ul>" + "".join(f"<li><b>{e(s)}</b>: {e(h)}</li>" for s, h in d.impact) + "</ul>")
    b.append("<div class='card rc'><h2>Root cause</h2>")
    if d.cause:
        b.append(f"<p>{e(d.cause.statement)}</p>")
    if top:
        b.append(f"<p><b>{e(top.resource)}</b> ({e(top.fault_kind.value)}, confidence {top.confidence:.0%}): "
                 f"{e(top.why)}</p>")
        for ev in top.evidence[:6]:
            b.append(f"<p><b>{e(ev.kind.value)}</b> {e(ev.title)}</p>" + metric_chart(ev.detail, 520, 140))
    b.append("</div><h2>Actions taken</h2><table><tr><th>action</th><th>status</th><th>approved by</th>"
             "<th>recovery</th></tr>")
    b += [f"<tr><td>{e(a['summary'])}</td><td>{e(a['status'])}</td><td>{e(a['approved_by'])}</td>"
          f"<td>{e(str((a.get('recovery') or {}).get('message', '')))}</td></tr>" for a in d.actions]
    b.append("</table><h2>Recommendations</h2><ul>" + "".join(f"<li>{e(r)}</li>" for r in d.recommendations) + "</ul>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Post-incident report · {e(inv.id)}"
            f"</title><style>{_CSS}</style></head><body>{''.join(b)}</body></html>\n")


def _latin(text: str) -> str:
    t = str(text).replace("→", "->").replace("—", "-").replace("–", "-").replace("×", "x").replace("·", "-")
    return t.encode("latin-1", "replace").decode("latin-1")


def pdf(d: PostmortemData) -> bytes:
    from fpdf import FPDF
    inv = d.investigation
    top = _top(d)
    doc = FPDF(format="A4")
    doc.set_auto_page_break(True, 15)
    doc.set_title(_latin(f"Post-incident report {inv.id}"))
    doc.set_creator("Vigil")
    doc.add_page()
    w = doc.w - doc.l_margin - doc.r_margin

    def head(text: str, size: int = 13) -> None:
        doc.set_font("helvetica", "B", size)
        doc.multi_cell(w, 7, _latin(text), new_x="LMARGIN", new_y="NEXT")
        doc.set_font("helvetica", "", 9)

    def para(text: str) -> None:
        doc.multi_cell(w, 4.6, _latin(text), new_x="LMARGIN", new_y="NEXT")

    head("Post-incident report", 16)
    para(inv.summary or inv.id)
    para(f"Space {inv.space_id} - investigation {inv.id} - onset {inv.window.onset:%Y-%m-%d %H:%M:%S} UTC")
    head("Timeline")
    for ev in d.timeline:
        para(f"{_when(ev.ts)}  {ev.kind:<13} {ev.text[:400]}")
    head("Impact")
    for s, h in d.impact:
        para(f"- {s}: {h}")
    head("Root cause")
    if d.cause:
        para(d.cause.statement)
    if top:
        para(f"{top.resource} ({top.fault_kind.value}, confidence {top.confidence:.0%}): {top.why}")
        for ev in top.evidence[:6]:
            para(f"{ev.kind.value}: {ev.title}")
            series = ev.detail.get("series") or []
            if len(series) >= 2:
                _chart(doc, series, ev.detail, w)
    head("Actions taken")
    for a in d.actions or [{"summary": "none", "status": "", "approved_by": "", "recovery": {}}]:
        rec = (a.get("recovery") or {}).get("message", "")
        para(f"- {a['summary']}: {a['status']}" + (f", approved by {a['approved_by']}" if a["approved_by"] else "")
             + (f"; {rec}" if rec else ""))
    head("Recommendations")
    for r in d.recommendations or ["none"]:
        para(f"- {r}")
    return bytes(doc.output())


def _chart(doc: Any, series: list, detail: dict, w: float, h: float = 28.0) -> None:
    pts = [(float(t), float(v)) for t, v in series if v is not None]
    if len(pts) < 2:
        return
    if doc.get_y() + h + 4 > doc.h - doc.b_margin:
        doc.add_page()
    x0, y0 = doc.l_margin, doc.get_y() + 1
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    hi = hi if hi > lo else lo + 1.0

    def px(t: float) -> float:
        return x0 + (t - t0) / max(t1 - t0, 1e-9) * w

    def py(v: float) -> float:
        return y0 + h - (v - lo) / (hi - lo) * h

    doc.set_draw_color(180, 180, 180)
    doc.rect(x0, y0, w, h)
    onset = detail.get("onset")
    if isinstance(onset, int | float) and t0 <= onset <= t1:
        doc.set_draw_color(207, 34, 46)
        doc.line(px(onset), y0, px(onset), y0 + h)
    med = detail.get("baseline_median")
    if isinstance(med, int | float) and lo <= med <= hi:
        doc.set_draw_color(120, 120, 120)
        doc.set_dash_pattern(dash=1.5, gap=1.0)
        doc.line(x0, py(med), x0 + w, py(med))
        doc.set_dash_pattern()
    doc.set_draw_color(9, 105, 218)
    doc.polyline([(px(t), py(v)) for t, v in pts])
    doc.set_y(y0 + h + 3)
