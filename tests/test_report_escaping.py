"""Reports carry telemetry (service names, log lines, alert text), which is untrusted: rendered by a real
CommonMark renderer (markdown-it-py, raw HTML on, as most Markdown viewers have it), the Markdown report
shows that text as text and never as HTML, a link or a broken-out code span; the HTML report escapes it."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime, timedelta

from markdown_it import MarkdownIt

from vigil.model import Hypothesis, Investigation, JournalEntry
from vigil.model.evidence import Evidence, EvidenceKind
from vigil.model.hypothesis import FaultKind
from vigil.model.investigation import Trigger, TriggerKind, Window
from vigil.model.journal import JournalKind
from vigil.report import ReportData, render

EVIL = '<script>alert("x")</script>'
IMG = "<img src=x onerror=alert(1)>"
LINK = "[click](javascript:alert(1))"
TICKS = "a `</code><script>alert(2)</script>` b ``` c"
PIPE = "cart|<b>bold</b>|**strong**"


def _data() -> ReportData:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    inv = Investigation(id="inv_x", space_id="shop", trigger=Trigger(kind=TriggerKind.MANUAL, text=EVIL),
                        window=Window.around(at, timedelta(minutes=30), timedelta(minutes=10)),
                        summary=f"root cause {EVIL} {LINK}")
    ev = Evidence(kind=EvidenceKind.LOG, resource=PIPE, title=f"new log template {IMG}", score=3.0,
                  detail={"category": "<i>cat</i>",
                          "templates": [{"template": TICKS, "before": 0, "after": 12, "shift": "<u>new</u>"}],
                          "samples": [f"ERROR {EVIL}", "```"]})
    hyp = Hypothesis(id="h1", investigation_id="inv_x", rank=1, resource=PIPE, fault_kind=FaultKind.ERROR,
                     confidence=0.8, why=f"errors rose {IMG} {LINK}", evidence=[ev], path=[PIPE, f"web{EVIL}"])
    journal = [JournalEntry(investigation_id="inv_x", seq=1, ts=at, kind=JournalKind.QUERY,
                            message=f"logs from {EVIL} | {IMG}", query=f'{{app="{EVIL}"}} |= "`x`"', rows=3)]
    return ReportData(inv, [hyp], journal)


def _tags(html: str) -> set[str]:
    return {m.lower() for m in re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", html)}


def test_markdown_report_shows_telemetry_as_text():
    md = render(_data(), "md")
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    # only the tags the report itself makes: no script, img, i, u, b from the telemetry, no link
    assert _tags(html) <= {"h1", "h2", "h3", "ul", "li", "p", "strong", "em", "code", "table", "thead", "tbody",
                           "tr", "th", "td"}, _tags(html)
    assert "<script" not in html and "<img" not in html and "<a " not in html
    # the text itself is all there, readable once rendered
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    for original in (EVIL, IMG, LINK, PIPE, f"root cause {EVIL} {LINK}", f"logs from {EVIL} | {IMG}"):
        assert original in text, (original, text)
    # the log template is one code span that holds its backticks and tags verbatim
    assert "<code>a `&lt;/code&gt;&lt;script&gt;alert(2)&lt;/script&gt;` b ``` c</code>" in html, html
    # the table keeps its six columns (a | in a service name does not add cells)
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", html, re.S) if "errors rose" in r)
    assert row.count("<td") == 6, row


def test_html_report_escapes_telemetry():
    html = render(_data(), "html")
    assert "<script" not in html and "<img" not in html and "<b>bold" not in html and "<i>cat" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
