"""Render an investigation (its hypotheses, evidence and journal) as Markdown, JSON or HTML.

The HTML is one self-contained file: inline CSS and inline SVG charts, no scripts, nothing fetched."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from vigil.model import Evidence, EvidenceKind, Hypothesis, Investigation, JournalEntry
from vigil.report.charts import metric_chart

FORMATS = ("md", "json", "html")


@dataclass
class ReportData:
    investigation: Investigation
    hypotheses: list[Hypothesis]
    journal: list[JournalEntry]


def render(data: ReportData, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({
            "investigation": data.investigation.model_dump(mode="json"),
            "hypotheses": [h.model_dump(mode="json") for h in data.hypotheses],
            "journal": [j.model_dump(mode="json") for j in data.journal],
        }, indent=2)
    if fmt == "md":
        return _markdown(data)
    if fmt == "html":
        return _html(data)
    raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")


_MD_PUNCT = re.compile(r"([\\`*_\[\]#!|~])")


def md_text(text: object, limit: int | None = None) -> str:
    """Untrusted text (a service name, a log line, an alert label) as inline Markdown that renders as the
    same text: on one line, HTML's ``&``, ``<`` and ``>`` as entities (no tag, comment or autolink can start)
    and Markdown's punctuation backslash-escaped (no emphasis, link, image, table cell or heading)."""
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[:limit]
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_PUNCT.sub(r"\\\1", flat)


def md_code(text: object, limit: int | None = None) -> str:
    """Untrusted text as an inline code span (shown verbatim; a code span holds no HTML): fenced by more
    backticks than any run inside it, so the text cannot close it, and outside any table (``|`` is literal)."""
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[:limit]
    longest = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _markdown(d: ReportData) -> str:
    inv = d.investigation
    t = md_text
    out = [f"# Investigation {t(inv.id)}", "",
           f"- Space: {t(inv.space_id)}",
           f"- Window: {inv.window.start:%Y-%m-%d %H:%M:%S} to {inv.window.end:%Y-%m-%d %H:%M:%S} UTC "
           f"(onset {inv.window.onset:%Y-%m-%d %H:%M:%S})",
           f"- Status: **{t(inv.status.value)}**", "", "## Summary", "", t(inv.summary) if inv.summary else "(none)", ""]
    if d.hypotheses:
        top = d.hypotheses[0]
        out += ["## Root cause", "",
                f"**{t(top.resource)}**: {t(top.fault_kind.value)}, confidence {top.confidence:.0%}. {t(top.why)}.", "",
                f"Propagation path: {' → '.join(t(p) for p in top.path)}", "", "## Ranked hypotheses", "",
                "| # | resource | fault kind | confidence | state | why |", "|---|---|---|---|---|---|"]
        out += [f"| {h.rank} | {t(h.resource)} | {t(h.fault_kind.value)} | {h.confidence:.0%} | {t(h.state.value)} | "
                f"{t(h.why)} |" for h in d.hypotheses]
        out += ["", "## Evidence", ""]
        for h in d.hypotheses[:3]:
            out += [f"### {h.rank}. {t(h.resource)}", ""]
            for e in h.evidence:
                out.append(f"- **{t(e.kind.value)}** ({t(e.detail.get('category', ''))}, score {e.score:.1f}): "
                           f"{t(e.title)}")
                for tpl in e.detail.get("templates", [])[:3]:
                    out.append(f"  - template {md_code(tpl['template'], 160)}: {t(tpl['before'])} before, "
                               f"{t(tpl['after'])} after ({t(tpl['shift'])})")
                for line in e.detail.get("samples", [])[:2]:
                    out.append(f"  - sample: {md_code(line, 200)}")
                out += [f"  - {t(line)}" for line in _view_lines(e)]
            out.append("")
    out += ["## Journal", "", "| # | time | kind | what | rows |", "|---|---|---|---|---|"]
    out += [f"| {j.seq} | {j.ts:%H:%M:%S} | {t(j.kind.value)} | {t(j.message, 300)}"
            f"{' — ' + t(j.query) if j.query else ''} | {'' if j.rows is None else j.rows} |" for j in d.journal]
    return "\n".join(out) + "\n"


def _view_lines(ev: Evidence, limit: int = 12) -> list[str]:
    """A saved view (an exemplar trace, the change events, the neighbourhood) as plain lines."""
    if ev.kind is not EvidenceKind.VIEW:
        return []
    d = ev.detail
    if d.get("category") == "trace":
        return [f"{s.get('resource', '')} {s.get('operation', '')}: {float(s.get('duration_ms', 0)):.1f} ms"
                + (" (failed)" if s.get("error") else "") for s in (d.get("spans") or [])[:limit]]
    if d.get("category") == "changes":
        return [f"{datetime.fromtimestamp(float(c.get('ts', 0)), UTC):%Y-%m-%d %H:%M:%S}Z {c.get('kind', '')} "
                f"{c.get('resource', '')}: {c.get('description', '')}"[:300] for c in (d.get("changes") or [])[-limit:]]
    if d.get("category") == "neighbourhood":
        edges = d.get("edges") or []
        return [", ".join(f"{x.get('src', '')} -> {x.get('dst', '')}" for x in edges[:40])[:1000]] if edges else []
    return []


def _chart(detail: dict, width: int = 520, height: int = 140) -> str:
    return metric_chart(detail, width, height)


_CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--mut:#57606a;--card:#f6f8fa;--acc:#cf222e;--line:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--mut:#8b949e;--card:#161b22;--acc:#ff7b72;--line:#58a6ff}}
body{font:15px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg);max-width:1100px;margin:2rem auto;padding:0 1rem}
.card{background:var(--card);border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}
.rc{border-left:6px solid var(--acc)} .mut{color:var(--mut)} table{border-collapse:collapse;width:100%}
td,th{padding:.3rem .5rem;border-bottom:1px solid #8884;text-align:left;vertical-align:top}
code{font-size:13px;word-break:break-all} svg text{font-size:10px;fill:var(--mut)}
.line{fill:none;stroke:var(--line);stroke-width:1.6}.base{stroke:var(--mut);stroke-dasharray:4 3}
.onset{stroke:var(--acc);stroke-width:1.2}.anom{fill:var(--acc);opacity:.12}
.band{fill:var(--mut);opacity:.12}.change{stroke:#bf8700;stroke-width:1.5;stroke-dasharray:2 2}
"""


def _html(d: ReportData) -> str:
    inv = d.investigation
    e = html.escape
    body = [f"<h1>Investigation <code>{e(inv.id)}</code></h1>",
            f'<p class="mut">Space <b>{e(inv.space_id)}</b> · onset {inv.window.onset:%Y-%m-%d %H:%M:%S} UTC · '
            f"status <b>{e(inv.status.value)}</b></p>"]
    if d.hypotheses:
        top = d.hypotheses[0]
        body.append(f'<div class="card rc"><h2>Root cause: {e(top.resource)}</h2>'
                    f"<p><b>{e(top.fault_kind.value)}</b> · confidence {top.confidence:.0%} · {e(top.why)}</p>"
                    f"<p>Propagation: {' → '.join(e(p) for p in top.path)}</p>"
                    f"<p class='mut'>{e(inv.summary)}</p></div>")
        body.append("<h2>Ranked hypotheses</h2><table><tr><th>#</th><th>resource</th><th>fault kind</th>"
                    "<th>confidence</th><th>state</th><th>why</th></tr>")
        body += [f"<tr><td>{h.rank}</td><td>{e(h.resource)}</td><td>{e(h.fault_kind.value)}</td>"
                 f"<td>{h.confidence:.0%}</td><td>{e(h.state.value)}</td><td>{e(h.why)}</td></tr>" for h in d.hypotheses]
        body.append("</table><h2>Evidence</h2>")
        for h in d.hypotheses[:3]:
            body.append(f'<div class="card"><h3>{h.rank}. {e(h.resource)}</h3>')
            for ev in h.evidence:
                body.append(f"<p><b>{e(ev.kind.value)}</b> <span class='mut'>({e(str(ev.detail.get('category', '')))}, "
                            f"score {ev.score:.1f})</span> {e(ev.title)}</p>")
                body.append(_chart(ev.detail))
                tpls = ev.detail.get("templates") or []
                if tpls:
                    body.append("<table><tr><th>template</th><th>before</th><th>after</th><th>shift</th></tr>")
                    body += [f"<tr><td><code>{e(t['template'][:200])}</code></td><td>{t['before']}</td>"
                             f"<td>{t['after']}</td><td>{e(t['shift'])}</td></tr>" for t in tpls[:5]]
                    body.append("</table>")
                for line in (ev.detail.get("samples") or [])[:2]:
                    body.append(f"<p class='mut'><code>{e(line[:300])}</code></p>")
                lines = _view_lines(ev)
                if lines:
                    body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>")
            body.append("</div>")
    body.append("<h2>Journal</h2><table><tr><th>#</th><th>time</th><th>kind</th><th>what</th><th>rows</th></tr>")
    body += [f"<tr><td>{j.seq}</td><td>{j.ts:%H:%M:%S}</td><td>{e(j.kind.value)}</td><td>{e(j.message)}"
             f"{'<br><code>' + e(j.query) + '</code>' if j.query else ''}</td>"
             f"<td>{'' if j.rows is None else j.rows}</td></tr>" for j in d.journal]
    body.append("</table>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Vigil · {e(inv.id)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
