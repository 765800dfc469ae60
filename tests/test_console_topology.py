"""The console's topology page with thousands of services: 5,000 services from one OTLP request used to
make it take ~55 s (a layout quadratic in the services, and a table that looked up each service's kind in
the whole list). The page now draws the services that matter (the root cause, its path, the other
suspects, their neighbours, then the most connected: at most ``GRAPH_LIMIT``), lists every service and
edge in tables that the search narrows (at most ``TABLE_ROWS`` rows each) and says so. This test checks
that the page is right at that size; how fast it is, ``benchmarks/topology_bench.py`` prints."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from e2e.kit import settings_for
from fastapi.testclient import TestClient

from vigil.api import create_app
from vigil.app import App
from vigil.model import AgentSpace, Edge, EdgeKind, EdgeSource, Hypothesis, InvestigationStatus, Role
from vigil.model.hypothesis import FaultKind
from vigil.model.investigation import Trigger, TriggerKind, Window
from vigil.server.runtime import Runtime
from vigil.server.settings import ServerSettings
from vigil.web.routes import TABLE_ROWS
from vigil.web.svg import GRAPH_LIMIT

N = 5000


def _export(n: int) -> bytes:
    """One OTLP/JSON trace export naming ``n`` services (svc-i's span is a child of svc-(i-1)//2's)."""
    t0 = time.time_ns() - 60_000_000_000
    rs = []
    for i in range(n):
        span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"{i + 1:016x}", "name": "GET /",
                "startTimeUnixNano": str(t0 + i), "endTimeUnixNano": str(t0 + i + 1000)}
        if i:
            span["parentSpanId"] = f"{(i - 1) // 2 + 1:016x}"
        rs.append({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": f"svc-{i:05d}"}}]},
                   "scopeSpans": [{"spans": [span]}]})
    return json.dumps({"resourceSpans": rs}).encode()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    rt = Runtime(App(settings_for(tmp_path_factory.mktemp("topo"))), ServerSettings(max_otlp_bytes=64 << 20))
    rt.state.put_space(AgentSpace(id="big", name="big"))
    secret = rt.state.create_token("big", Role.OPERATOR, name="t")[0]
    with TestClient(create_app(rt, start=False)) as c:
        r = c.post("/v1/traces", content=_export(N), headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {secret}"})
        assert r.status_code == 200, r.text[:300]
        page = c.get("/ui/login")
        nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
        assert c.post("/ui/login", data={"login_csrf": nonce, "token": secret},
                      follow_redirects=False).status_code == 303
        yield rt, c
    rt.app.close()


def test_thousands_of_services_from_one_otlp_request(console):
    rt, c = console
    r = c.get("/ui/s/big/topology")
    assert r.status_code == 200
    html = r.text
    assert f"{N} services, 0 edges." in html
    drawn = re.findall(r'<g class="node [^"]*" data-service="([^"]+)"', html)
    assert len(drawn) == GRAPH_LIMIT and len(set(drawn)) == GRAPH_LIMIT
    assert f"The graph shows {GRAPH_LIMIT} of the {N} services" in html
    rows = re.findall(r"<tr><td>(svc-\d+)</td><td><span class=\"badge hl-(\w+)\">", html)
    assert len(rows) == TABLE_ROWS and f"Showing {TABLE_ROWS} of {N}" in html
    assert [n for n, _ in rows] == sorted(n for n, _ in rows)            # all ok: by name
    assert len(html) < 400_000


def test_the_root_cause_its_path_and_neighbours_are_drawn_and_listed_first(console):
    rt, c = console
    # the call edges an investigation learns from these spans, and a concluded investigation naming a root cause
    rt.app.sources.learn_edges("big", [Edge(src=f"svc-{(i - 1) // 2:05d}", dst=f"svc-{i:05d}", kind=EdgeKind.CALLS,
                                            source=EdgeSource.TRACES) for i in range(1, N)])
    at = datetime.now(UTC) - timedelta(hours=1)
    inv = rt.state.create_investigation("big", Trigger(kind=TriggerKind.MANUAL),
                                        Window.around(at, timedelta(minutes=30), timedelta(minutes=5)))
    rt.state.set_status(inv.id, InvestigationStatus.RUNNING)
    root, path = "svc-04321", ["svc-04321", "svc-02160", "svc-01079", "svc-00539"]
    rt.state.replace_hypotheses(inv.id, [
        Hypothesis(rank=1, resource=root, fault_kind=FaultKind.CPU, confidence=0.8, why="cpu", path=path),
        Hypothesis(rank=2, resource="svc-03333", fault_kind=FaultKind.ERROR, confidence=0.3, why="errors")])
    rt.state.set_status(inv.id, InvestigationStatus.CONCLUDED, summary="root cause svc-04321")
    html = c.get("/ui/s/big/topology").text
    assert f"{N} services, {N - 1} edges." in html
    drawn = dict(re.findall(r'<g class="node ([^"]*)" data-service="([^"]+)"', html)[i][::-1]
                 for i in range(GRAPH_LIMIT))
    assert len(drawn) == GRAPH_LIMIT
    assert drawn[root] == "suspect onpath" and all(drawn[p].endswith("onpath") for p in path)
    assert drawn["svc-03333"] == "anomalous"
    for n in ("svc-08643", "svc-08644"):             # the root cause's callees (2i+1, 2i+2) are not in the space
        assert n not in drawn
    assert "svc-01666" in drawn and "svc-06667" not in drawn      # the other suspect's caller (its callees: none)
    rows = re.findall(r"<tr><td>(svc-\d+)</td><td><span class=\"badge hl-(\w+)\">", html)
    assert rows[:5] == [(root, "suspect"), ("svc-00539", "affected"), ("svc-01079", "affected"),
                        ("svc-02160", "affected"), ("svc-03333", "anomalous")]
    assert html.count('class="edge path"') == len(path) - 1       # the propagation path is drawn


def test_the_search_finds_any_service(console):
    _rt, c = console
    html = c.get("/ui/s/big/topology", params={"q": "svc-0499"}).text
    rows = re.findall(r"<tr><td>(svc-\d+)</td><td><span class=\"badge", html)
    assert rows == [f"svc-0499{k}" for k in range(10)]
    assert "10 matching services." in html
    edges = re.findall(r"<tr><td>(svc-\d+)</td><td>(svc-\d+)</td><td>calls</td>", html)
    assert ("svc-02495", "svc-04991") in edges and all("svc-0499" in a + b for a, b in edges)
    r = c.get("/ui/s/big/topology", params={"q": "x" * 201})
    assert r.status_code == 422
