"""TempoConnector against a loopback stand-in of Tempo's HTTP API.

Shapes follow the Grafana Tempo 2.x HTTP API reference: GET /api/search (TraceQL ``q``, ``start``/``end``
in Unix seconds, ``limit``, ``spss``) -> {"traces": [{"traceID", "rootServiceName", "rootTraceName",
"startTimeUnixNano", "durationMs", "spanSet": {...}, "spanSets": [...]}], "metrics": {...}};
GET /api/traces/<traceID> -> OTLP trace JSON {"batches": [{"resource": {"attributes": [...]},
"scopeSpans": [{"scope": {...}, "spans": [{"traceId", "spanId", "parentSpanId", "name", "kind",
"startTimeUnixNano", "endTimeUnixNano", "status": {"code": "STATUS_CODE_ERROR"}}]}]}]} with base64 ids
(protobuf JSON mapping, what Tempo writes); GET /api/status/buildinfo. The second trace is served in the
OTLP/JSON-spec form ({"trace": {"resourceSpans": ...}}, hex ids, as /api/v2/traces nests it) to exercise
both id encodings. Data: two real Nezha Train-Ticket traces through the faulty ts-contacts-service."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from sources.vendor_standins import FAULTY, TRACES, Request, StandIn, nezha_slice
from vigil.sources.connector import SourceError, build


def _b64(hexid: str) -> str:
    return base64.b64encode(bytes.fromhex(hexid)).decode()


def _otlp(trace_id: str, hex_ids: bool) -> list[dict]:
    _, spans = nezha_slice()
    enc = (lambda h: h) if hex_ids else _b64
    batches = []
    for svc, group in spans[spans.trace_id == trace_id].groupby("service"):
        out = []
        for r in group.itertuples():
            sp = {"traceId": enc(r.trace_id), "spanId": enc(r.span_id), "name": r.operation,
                  "kind": "SPAN_KIND_SERVER" if r.operation.startswith("/") else "SPAN_KIND_INTERNAL",
                  "startTimeUnixNano": str(r.start_ns), "endTimeUnixNano": str(r.end_ns),
                  "attributes": [{"key": "k8s.pod.name", "value": {"stringValue": svc + "-pod"}}],
                  "status": {"code": "STATUS_CODE_ERROR", "message": "injected"} if r.error else {}}
            if r.parent_id:
                sp["parentSpanId"] = enc(r.parent_id)
            out.append(sp)
        batches.append({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                        "scopeSpans": [{"scope": {"name": "io.opentelemetry.spring-webmvc-5.3"}, "spans": out}]})
    return batches


def search(req: Request):
    _, spans = nezha_slice()
    assert req.params["q"] and req.params["spss"]
    start, end, limit = int(req.params["start"]), int(req.params["end"]), int(req.params["limit"])
    roots = spans[spans.parent_id == ""].sort_values("start_ns")
    traces = []
    for r in roots.itertuples():
        if start <= r.start_ns / 1e9 <= end:
            traces.append({"traceID": r.trace_id, "rootServiceName": r.service, "rootTraceName": r.operation,
                           "startTimeUnixNano": str(r.start_ns), "durationMs": int((r.end_ns - r.start_ns) / 1e6),
                           "spanSet": {"spans": [{"spanID": r.span_id, "startTimeUnixNano": str(r.start_ns),
                                                  "durationNanos": str(r.end_ns - r.start_ns)}], "matched": 1},
                           "spanSets": [{"spans": [{"spanID": r.span_id, "startTimeUnixNano": str(r.start_ns),
                                                    "durationNanos": str(r.end_ns - r.start_ns)}], "matched": 1}]})
    return 200, {"traces": traces[:limit], "metrics": {"inspectedBytes": "1024", "completedJobs": 1, "totalJobs": 1}}


def trace(req: Request):
    tid = req.path.rsplit("/", 1)[-1]
    if tid not in TRACES:
        return 404, "trace not found\n"
    if tid == TRACES[1]:
        return 200, {"trace": {"resourceSpans": _otlp(tid, hex_ids=True)}}
    return 200, {"batches": _otlp(tid, hex_ids=False)}


def buildinfo(_req: Request):
    return 200, {"version": "2.6.1", "revision": "7f8e5d3", "branch": "HEAD", "buildUser": "",
                 "buildDate": "", "goVersion": "go1.22.7"}


ROUTES = {"/api/search": search, "/api/traces/": trace, "/api/status/buildinfo": buildinfo}


@pytest.fixture
def tempo():
    with StandIn(dict(ROUTES)) as s:
        yield s


def _window():
    _, spans = nezha_slice()
    return spans.start_ns.min() / 1e9 - 1, spans.end_ns.max() / 1e9 + 1


def test_spans_frame_with_parent_links_and_errors(tempo):
    _, rec = nezha_slice()
    c = build("tempo", "tempo", {"url": tempo.url})
    df = c.spans(*_window())
    assert list(df.columns) == ["trace_id", "span_id", "parent_id", "resource", "operation", "start",
                                "duration_ms", "error"]
    assert len(df) == len(rec) and set(df.trace_id) == set(TRACES)
    j = df.merge(rec, on=["trace_id", "span_id"])
    assert len(j) == len(rec)
    assert (j.parent_id_x == j.parent_id_y).all()              # parent links survive both id encodings
    assert (j.resource == j.service).all() and (j.operation_x == j.operation_y).all()
    assert np.allclose(j.start, j.start_ns / 1e9, atol=1e-6)     # epoch seconds
    assert np.allclose(j.duration_ms, (j.end_ns - j.start_ns) / 1e6, atol=1e-3)
    assert (j.error_x == j.error_y).all() and j.error_x.sum() >= 2
    assert set(df[df.error].resource) >= {FAULTY}
    assert (df.parent_id == "").sum() == 2
    called = tempo.paths()
    assert called[0] == "/api/search" and sorted(called[1:]) == sorted(f"/api/traces/{t}" for t in TRACES)


def test_max_traces_bounds_fetches(tempo):
    c = build("tempo", "tempo", {"url": tempo.url, "max_traces": 1, "traceql": '{ status = error }'})
    df = c.spans(*_window())
    assert df.trace_id.nunique() == 1
    assert tempo.requests[0].params["limit"] == "1" and tempo.requests[0].params["q"] == "{ status = error }"
    assert sum(p.startswith("/api/traces/") for p in tempo.paths()) == 1


def test_topology_call_edges_and_check(tempo, monkeypatch):
    _, end = _window()
    monkeypatch.setattr("vigil.sources.tempo.time.time", lambda: end)
    c = build("tempo", "tempo", {"url": tempo.url, "topology_lookback_s": 60})
    topo = c.topology()
    edges = {(e.src, e.dst) for e in topo.edges}
    assert ("ts-preserve-service", FAULTY) in edges
    assert ("ts-gateway-service", "ts-preserve-service") in edges
    assert FAULTY in {r.name for r in topo.resources}
    assert c.check() == f"Tempo 2.6.1 at {tempo.url.split('//')[1]} answered"


def test_down_backend_is_one_line_error(tempo):
    c = build("tempo", "tempo", {"url": tempo.url})
    tempo.mode = "fail"
    for call in (lambda: c.spans(*_window()), c.check):
        with pytest.raises(SourceError) as ei:
            call()
        assert "HTTP 503" in str(ei.value) and "\n" not in str(ei.value)


def test_slow_backend_is_bounded_by_timeout(tempo):
    tempo.mode, tempo.slow_s = "slow", 3.0
    c = build("tempo", "tempo", {"url": tempo.url, "timeout_s": 0.5})
    t0 = time.monotonic()
    with pytest.raises(SourceError) as ei:
        c.spans(*_window())
    assert time.monotonic() - t0 < 2.0 and "did not answer" in str(ei.value)


def test_slow_trace_fetches_are_cut_at_the_timeout(tempo):
    """Search answers at once, trace fetches stall: the query still ends within the timeout."""
    def slow_trace(req: Request):
        time.sleep(3.0)
        return trace(req)
    tempo.routes["/api/traces/"] = slow_trace
    c = build("tempo", "tempo", {"url": tempo.url, "timeout_s": 0.8})
    t0 = time.monotonic()
    with pytest.raises(SourceError):
        c.spans(*_window())
    assert time.monotonic() - t0 < 1.5
    c.close()
