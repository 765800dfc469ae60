"""The console's evidence is an analyzer's output saved with the investigation (``evidence-view``): the
console, the reports and MCP show the same evidence, and the console's investigation page reads no
source (here every source and the embedded store refuse to be read while the page is drawn)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from e2e.kit import live_server, wait_for

from vigil.agent.investigator import observe
from vigil.engine import Settings, analyze
from vigil.engine.analyzers.views import attach
from vigil.ingest import discover
from vigil.model import EvidenceKind, Role

REPO = Path(__file__).resolve().parent.parent
WINDOW = {"start": "2023-01-29T15:00:00Z", "end": "2023-01-29T16:30:00Z"}
ROOT = "ts-preserve-service"
QUERIES = ("metrics", "logs", "spans", "changes", "topology", "alerts", "baselines")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("views"), workers=1) as lv:
        lv.runtime.app.import_recording(discover([REPO / "demo" / "nezha-trainticket"])[0], "demo")
        yield lv


@pytest.fixture(scope="module")
def concluded(live):
    op = live.token("demo", Role.OPERATOR, name="views-op")
    with live.client(op) as c:
        r = c.post("/v1/spaces/demo/investigations", json={"starting_point": "latest-alarm", **WINDOW})
        assert r.status_code == 202, r.text
        inv = r.json()["id"]
        wait_for(lambda: c.get(f"/v1/spaces/demo/investigations/{inv}").json()["status"] not in ("queued", "running"),
                 180, 0.2, "the investigation")
    return op, inv


def _views(h: dict) -> dict[str, dict]:
    return {e["detail"]["category"]: e for e in h["evidence"] if e["kind"] == "view"}


def test_the_engine_works_out_the_views_of_the_leading_candidates(live):
    alert = max(live.runtime.telemetry.alerts("demo"), key=lambda x: x.at)
    obs = observe(live.runtime.app.sources, "demo", alert.at.timestamp(), alert, Settings())
    a = analyze(obs)
    attach(a.hypotheses, a.findings)
    top = a.hypotheses[0]
    views = {e.detail["category"]: e for e in top.evidence if e.kind is EvidenceKind.VIEW}
    assert top.resource == ROOT and {"chart", "trace", "neighbourhood"} <= set(views), sorted(views)
    n = sum(e.kind is EvidenceKind.VIEW for e in top.evidence)
    assert [e.kind is EvidenceKind.VIEW for e in top.evidence] == [False] * (len(top.evidence) - n) + [True] * n
    chart = views["chart"].detail
    assert len(chart["series"]) >= 10 and chart["baseline_scale"] > 0 and chart["metric"]
    spans = views["trace"].detail["spans"]
    assert spans and any(s["resource"] == ROOT for s in spans) and len({s["trace_id"] for s in spans}) == 1
    assert any(ROOT in (e["src"], e["dst"]) for e in views["neighbourhood"].detail["edges"])
    # attached once, however often it is called
    attach(a.hypotheses, a.findings)
    assert sum(e.kind is EvidenceKind.VIEW for e in a.hypotheses[0].evidence) == n


def test_the_views_are_saved_and_shown_by_the_api_reports_and_mcp(live, concluded):
    op, inv = concluded
    with live.client(op) as c:
        hyps = c.get(f"/v1/spaces/demo/investigations/{inv}/hypotheses").json()
        assert hyps[0]["resource"] == ROOT
        views = _views(hyps[0])
        assert {"chart", "trace", "neighbourhood"} <= set(views), sorted(views)
        md = c.get(f"/v1/spaces/demo/investigations/{inv}/report", params={"format": "md"}).text
        trace = views["trace"]
        assert f"**view** (trace, score 0.0): {trace['title']}" in md.replace("\\", "")
        html = c.get(f"/v1/spaces/demo/investigations/{inv}/report", params={"format": "html"}).text
        assert views["chart"]["detail"]["metric"] in html and "<svg" in html
    from vigil.mcp.tools import VigilTools
    shaped = VigilTools._hyp(live.state.hypotheses(inv)[0], 5)
    assert {v["view"] for v in shaped["views"]} >= {"chart", "trace", "neighbourhood"}
    assert all(e["kind"] != "view" for e in shaped["evidence"])


class Refusing:
    """Every read of telemetry fails loudly (and is counted)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        if name in QUERIES:
            def refuse(*a, **k):
                self.calls.append(name)
                raise AssertionError(f"the console read {name} while drawing a page")
            return refuse
        raise AttributeError(name)


def test_the_investigation_page_reads_no_source(live, concluded, monkeypatch):
    op, inv = concluded
    refusing = Refusing()
    monkeypatch.setattr(live.runtime.app, "_sources", refusing)
    for q in QUERIES:
        monkeypatch.setattr(live.runtime.app.telemetry, q, getattr(refusing, q))
    with live.client() as c:
        page = c.get("/ui/login")
        nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
        assert c.post("/ui/login", data={"login_csrf": nonce, "token": op}, follow_redirects=False).status_code == 303
        r = c.get(f"/ui/s/demo/investigations/{inv}")
        assert r.status_code == 200, r.text[:500]
        panel = c.get(f"/ui/s/demo/investigations/{inv}/panel")
        assert panel.status_code == 200
    assert refusing.calls == []
    text = r.text
    assert ROOT in text and 'class="chart" aria-label=' in text   # charts from the saved series
    assert "waterfall" in text                                  # the exemplar trace from the saved rows
    assert "propagation path" in text                           # the graph from the saved neighbourhood
    assert "no saved evidence view" not in text
