"""JaegerConnector against a loopback stand-in of the Jaeger query service's HTTP JSON API.

Shapes follow the Jaeger query service's HTTP JSON API as served by jaeger-query 1.x and Jaeger 2.x
(``model/json`` in jaegertracing/jaeger; the Jaeger docs call it the internal HTTP API the UI uses):
every answer is {"data": ..., "total": n, "limit": 0, "offset": 0, "errors": null};
GET /api/services -> data: [names]; GET /api/traces?service=&start=&end=&limit= (µs) -> data: [{"traceID",
"spans": [{"traceID", "spanID", "flags", "operationName", "references": [{"refType": "CHILD_OF", "traceID",
"spanID"}], "startTime" (µs), "duration" (µs), "tags": [{"key", "type", "value"}], "logs", "processID",
"warnings"}], "processes": {"p1": {"serviceName", "tags"}}, "warnings": null}];
GET /api/dependencies?endTs=&lookback= (ms) -> data: [{"parent", "child", "callCount"}].
Data: two real Nezha Train-Ticket traces through the faulty ts-contacts-service."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sources.vendor_standins import FAULTY, TRACES, Request, StandIn, nezha_slice
from vigil.sources.connector import SourceError, build
from vigil.sources.jaeger import trace_rows


def _envelope(data):
    return {"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}


def _jaeger_trace(tid: str) -> dict:
    _, spans = nezha_slice()
    t = spans[spans.trace_id == tid]
    pids = {svc: f"p{i + 1}" for i, svc in enumerate(sorted(set(t.service)))}
    out = []
    for r in t.itertuples():
        tags = [{"key": "span.kind", "type": "string", "value": "server"}]
        if r.error:
            tags.append({"key": "error", "type": "bool", "value": True})
        refs = [{"refType": "CHILD_OF", "traceID": tid, "spanID": r.parent_id}] if r.parent_id else []
        out.append({"traceID": tid, "spanID": r.span_id, "flags": 1, "operationName": r.operation,
                    "references": refs, "startTime": int(r.start_ns // 1000),
                    "duration": int((r.end_ns - r.start_ns) // 1000), "tags": tags, "logs": [],
                    "processID": pids[r.service], "warnings": None})
    procs = {p: {"serviceName": s, "tags": [{"key": "hostname", "type": "string", "value": s + "-pod"}]}
             for s, p in pids.items()}
    return {"traceID": tid, "spans": out, "processes": procs, "warnings": None}


def services(_req: Request):
    _, spans = nezha_slice()
    return 200, _envelope(sorted(set(spans.service)))


def traces(req: Request):
    _, spans = nezha_slice()
    svc = req.params["service"]
    start, end, limit = int(req.params["start"]), int(req.params["end"]), int(req.params["limit"])
    hit = spans[(spans.service == svc) & (spans.start_ns // 1000 >= start) & (spans.start_ns // 1000 <= end)]
    return 200, _envelope([_jaeger_trace(t) for t in sorted(set(hit.trace_id))][:limit])


def dependencies(req: Request):
    assert int(req.params["endTs"]) > 1.6e12 and int(req.params["lookback"]) > 0
    _, spans = nezha_slice()
    par = spans[["span_id", "service"]].rename(columns={"span_id": "parent_id", "service": "parent"})
    j = spans.merge(par, on="parent_id")
    j = j[j.parent != j.service].groupby(["parent", "service"]).size()
    return 200, _envelope([{"parent": a, "child": b, "callCount": int(n)} for (a, b), n in j.items()])


ROUTES = {"/api/services": services, "/api/traces": traces, "/api/dependencies": dependencies}


@pytest.fixture
def jaeger():
    with StandIn(dict(ROUTES)) as s:
        yield s


def _window():
    _, spans = nezha_slice()
    return spans.start_ns.min() / 1e9 - 1, spans.end_ns.max() / 1e9 + 1


def test_spans_frame_from_all_services(jaeger):
    _, rec = nezha_slice()
    c = build("jaeger", "jaeger", {"url": jaeger.url})
    df = c.spans(*_window())
    assert len(df) == len(rec) and set(df.trace_id) == set(TRACES)     # deduplicated across services
    j = df.merge(rec, on=["trace_id", "span_id"])
    assert len(j) == len(rec)
    assert (j.parent_id_x == j.parent_id_y).all() and (df.parent_id == "").sum() == 2
    assert (j.resource == j.service).all()
    assert np.allclose(j.start, j.start_ns / 1e9, atol=2e-6)          # µs -> epoch seconds
    assert np.allclose(j.duration_ms, (j.end_ns - j.start_ns) / 1e6, atol=2e-3)
    assert (j.error_x == j.error_y).all() and set(df[df.error].resource) >= {FAULTY}
    q = [r for r in jaeger.requests if r.path == "/api/traces"]
    assert len(q) == rec.service.nunique()
    assert all(len(r.params["start"]) == 16 for r in q)                 # microseconds


def test_configured_services_and_bounds(jaeger):
    c = build("jaeger", "jaeger", {"url": jaeger.url, "services": [FAULTY], "traces_per_service": 1})
    df = c.spans(*_window())
    assert df.trace_id.nunique() == 1 and FAULTY in set(df.resource)
    assert "/api/services" not in jaeger.paths()
    assert [r.params["limit"] for r in jaeger.requests] == ["1"]


def test_topology_from_dependencies_and_check(jaeger):
    services = nezha_slice()[1].service.nunique()        # (skips, with where to get them, without the recordings)
    c = build("jaeger", "jaeger", {"url": jaeger.url})
    topo = c.topology()
    edges = {(e.src, e.dst): e.weight for e in topo.edges}
    assert ("ts-preserve-service", FAULTY) in edges and edges[("ts-preserve-service", FAULTY)] >= 2
    assert FAULTY in {r.name for r in topo.resources}
    assert c.check().endswith(f"{services} services")


def test_ids_padded_and_error_tags():
    tr = {"traceID": "61d8c5aa3ad1c6", "processes": {"p1": {"serviceName": "cart"}}, "spans": [
        {"traceID": "61d8c5aa3ad1c6", "spanID": "a1", "operationName": "GET", "references": [
            {"refType": "FOLLOWS_FROM", "traceID": "61d8c5aa3ad1c6", "spanID": "f0"},
            {"refType": "CHILD_OF", "traceID": "61d8c5aa3ad1c6", "spanID": "b2"}],
         "startTime": 1674981797109000, "duration": 1500, "processID": "p1",
         "tags": [{"key": "otel.status_code", "type": "string", "value": "ERROR"}]}]}
    (row,) = trace_rows(tr)
    assert row[0] == "000000000000000000" + "61d8c5aa3ad1c6" and row[1] == "00000000000000a1"
    assert row[2] == "00000000000000b2" and row[3] == "cart" and row[7] is True
    assert row[5] == 1674981797.109 and row[6] == 1.5


def test_down_backend_is_one_line_error(jaeger):
    c = build("jaeger", "jaeger", {"url": jaeger.url})
    jaeger.mode = "fail"
    for call in (lambda: c.spans(*_window()), c.check, c.topology):
        with pytest.raises(SourceError) as ei:
            call()
        assert "HTTP 503" in str(ei.value) and "\n" not in str(ei.value)


def test_slow_backend_is_bounded_by_timeout(jaeger):
    jaeger.mode, jaeger.slow_s = "slow", 3.0
    c = build("jaeger", "jaeger", {"url": jaeger.url, "timeout_s": 0.5})
    t0 = time.monotonic()
    with pytest.raises(SourceError) as ei:
        c.spans(*_window())
    assert time.monotonic() - t0 < 2.0 and "did not answer" in str(ei.value)
