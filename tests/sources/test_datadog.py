"""DatadogConnector (datadog-api-client 2.x) against a loopback stand-in of Datadog's API.

Shapes follow the Datadog API reference (v2 "Search logs" POST /api/v2/logs/events/search ->
{"data": [{"id", "type": "log", "attributes": {"service", "status", "message", "timestamp", "host",
"tags", "attributes": {...}}}], "links": {"next"}, "meta": {"elapsed", "page": {"after"}, "request_id",
"status"}}; v1 "Query timeseries points" GET /api/v1/query -> {"status": "ok", "res_type": "time_series",
"series": [{"metric", "display_name", "scope", "expression", "pointlist": [[ms, value]], "tag_set",
"aggr", "interval", "length", "start", "end", "unit"}], "from_date", "to_date", "query", "group_by",
"message", "resp_version"}; v2 "Search spans" POST /api/v2/spans/events/search -> {"data": [{"id",
"type": "spans", "attributes": {"trace_id", "span_id", "parent_id", "service", "resource_name",
"start_timestamp", "end_timestamp", "attributes", "custom", "tags", "env", "host", "type"}}], "links",
"meta"}; v1 GET /api/v1/validate -> {"valid": true}; errors {"errors": ["..."]}). The client itself
checks these shapes against its OpenAPI models. Ids are Datadog's: decimal 64-bit, the high half of a
128-bit trace id in ``_dd.p.tid``. Data: the real Nezha Train-Ticket lines and spans of two traces through
the faulty ts-contacts-service."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from sources.vendor_standins import FAULTY, TRACES, Request, StandIn, nezha_slice
from vigil.errors import InputError
from vigil.sources.connector import SourceError, build
from vigil.sources.datadog import hex_id


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(ns: int) -> int:
    return int(ns // 1_000_000)


def _parse(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def _page(items, req_page, key):
    after = int(req_page.get("cursor") or 0)
    size = int(req_page.get("limit") or 10)
    chunk = items[after:after + size]
    nxt = after + size if after + size < len(items) else None
    meta = {"elapsed": 41, "request_id": "pddv1ChZ", "status": "done"}
    if nxt is not None:
        meta["page"] = {"after": str(nxt)}
    return 200, {"data": chunk, "links": {"next": f"https://api.datadoghq.com/api/v2/{key}?page[cursor]={nxt}"}
                 if nxt else {}, "meta": meta}


def logs_search(req: Request):
    assert req.headers["dd-api-key"] == "dd-api-secret" and req.headers["dd-application-key"] == "dd-app-secret"
    logs, _ = nezha_slice()
    f = req.body["filter"]
    assert req.body["sort"] == "timestamp"
    lo, hi = _parse(f["from"]), _parse(f["to"])
    q = f["query"]
    svc = re.search(r'service:\(([^)]*)\)', q)
    services = set(re.findall(r'"([^"]*)"', svc.group(1))) if svc else None
    phrase = re.sub(r'service:\([^)]*\)', "", q).strip().strip('"') or None
    items = []
    for i, r in enumerate(logs.itertuples()):
        if not (lo <= _ms(r.ts_ns) <= hi) or (services and r.service not in services) \
                or (phrase and phrase != "*" and phrase not in r.line):
            continue
        m = re.search(r"\b(ERROR|WARN|INFO|DEBUG)\b", r.line)
        items.append({"id": f"AQAAAYX{i:08d}", "type": "log", "attributes": {
            "service": r.service, "status": {"ERROR": "error", "WARN": "warn"}.get(m.group(1) if m else "", "info"),
            "message": r.line, "timestamp": _iso(r.ts_ns), "host": r.pod, "tags": ["env:train-ticket"],
            "attributes": {"dd": {"trace_id": str(int(r.trace_id[16:], 16)), "span_id": str(int(r.span_id, 16))},
                           "trace_id": r.trace_id}}})
    return _page(items, req.body.get("page") or {}, "logs/events")


def spans_search(req: Request):
    _, spans = nezha_slice()
    a = req.body["data"]["attributes"]
    assert req.body["data"]["type"] == "search_request" and a["sort"] == "timestamp"
    lo, hi = _parse(a["filter"]["from"]), _parse(a["filter"]["to"])
    items = []
    for r in spans.sort_values("start_ns").itertuples():
        if not lo <= _ms(r.start_ns) <= hi:
            continue
        items.append({"id": "AAAAAZ" + r.span_id, "type": "spans", "attributes": {
            "trace_id": str(int(r.trace_id[16:], 16)), "span_id": str(int(r.span_id, 16)),
            "parent_id": str(int(r.parent_id, 16)) if r.parent_id else "0", "service": r.service,
            "resource_name": r.operation, "start_timestamp": _iso(r.start_ns), "end_timestamp": _iso(r.end_ns),
            "attributes": {"_dd.p.tid": r.trace_id[:16], **({"status": "error"} if r.error else {})},
            "custom": {"duration": int(r.end_ns - r.start_ns)}, "tags": ["env:train-ticket"],
            "env": "train-ticket", "host": r.service + "-pod", "type": "web"}})
    return _page(items, a.get("page") or {}, "spans/events")


def query_metrics(req: Request):
    lo, hi, q = int(req.params["from"]), int(req.params["to"]), req.params["query"]
    logs, _ = nezha_slice()
    series = []
    for svc, g in logs.groupby("service"):
        pts = sorted({_ms(t) // 60000 * 60000 for t in g.ts_ns if lo * 1000 <= _ms(t) <= hi * 1000})
        series.append({"metric": "trace.http.request.errors", "display_name": "trace.http.request.errors",
                       "scope": f"service:{svc}", "expression": q.replace("by {service}", f"{{service:{svc}}}"),
                       "pointlist": [[float(p), float(len(g))] for p in pts], "tag_set": [f"service:{svc}"],
                       "aggr": "sum", "interval": 60, "length": len(pts), "start": pts[0] if pts else lo * 1000,
                       "end": pts[-1] if pts else hi * 1000, "unit": None})
    return 200, {"status": "ok", "res_type": "time_series", "series": series, "from_date": lo * 1000,
                 "to_date": hi * 1000, "query": q, "group_by": ["service"], "message": "", "resp_version": 1}


def validate(_req: Request):
    return 200, {"valid": True}


ROUTES = {"/api/v2/logs/events/search": logs_search, "/api/v2/spans/events/search": spans_search,
          "/api/v1/query": query_metrics, "/api/v1/validate": validate}


@pytest.fixture
def dd(monkeypatch):
    monkeypatch.setenv("DD_API_KEY", "dd-api-secret")
    monkeypatch.setenv("DD_APP_KEY", "dd-app-secret")
    with StandIn(dict(ROUTES)) as s:
        yield s


def _conn(url: str, **kw):
    return build("dd", "datadog", {"url": url, "api_key": {"env": "DD_API_KEY"}, "app_key": {"env": "DD_APP_KEY"},
                                   **kw})


def _window():
    logs, spans = nezha_slice()
    return min(logs.ts_ns.min(), spans.start_ns.min()) / 1e9 - 1, max(logs.ts_ns.max(), spans.end_ns.max()) / 1e9 + 1


def test_logs_paged_by_cursor(dd):
    logs, _ = nezha_slice()
    c = _conn(dd.url, page_size=40)
    df = c.logs(*_window())
    assert len(df) == len(logs) and df.ts.is_monotonic_increasing
    assert np.allclose(sorted(df.ts), sorted((logs.ts_ns // 1_000_000) / 1e3), atol=1e-3)
    assert set(df.resource) == set(logs.service) and set(df.trace_id) == set(TRACES)
    assert set(df.span_id) == set(logs.span_id)
    assert set(df[df.body.str.contains(" ERROR ")].level) == {"ERROR"}
    calls = [r for r in dd.requests if r.path.endswith("logs/events/search")]
    assert len(calls) == -(-len(logs) // 40) and calls[1].body["page"]["cursor"] == "40"
    sub = c.logs(*_window(), resources=[FAULTY], contains="ERROR")
    assert set(sub.resource) == {FAULTY} and set(sub.level) == {"ERROR"} and len(sub) >= 2
    assert dd.requests[-1].body["filter"]["query"] == 'service:("ts-contacts-service") "ERROR"'
    assert len(c.logs(*_window(), limit=5)) == 5


def test_spans_with_128bit_ids_parents_and_errors(dd):
    _, rec = nezha_slice()
    df = _conn(dd.url, page_size=150).spans(*_window())
    assert len(df) == len(rec) and set(df.trace_id) == set(TRACES)
    j = df.merge(rec, on=["trace_id", "span_id"])
    assert len(j) == len(rec) and (j.parent_id_x == j.parent_id_y).all()
    assert (j.resource == j.service).all() and (j.error_x == j.error_y).all() and j.error_x.sum() >= 2
    assert np.allclose(j.start, (j.start_ns // 1_000_000) / 1e3, atol=1e-3)
    assert set(df[df.error].resource) >= {FAULTY}


def test_metrics_by_service_tag_and_check(dd):
    c = _conn(dd.url, metric_queries=[{"name": "error_count", "query": "sum:trace.http.request.errors{*} by {service}"}])
    m = c.metrics(*_window())
    assert FAULTY in set(m.resource) and set(m.name) == {"error_count"}
    assert (m.ts > 1.67e9).all() and (m.ts < 1.68e9).all()
    assert set(c.metrics(*_window(), resources=[FAULTY]).resource) == {FAULTY}
    assert c.check().endswith("API key valid")


def test_ids_and_config():
    assert hex_id("3541361398749498439", 16) == format(3541361398749498439, "016x")
    assert hex_id("10", 32, high="dc7db5cbec8d511c") == "dc7db5cbec8d511c000000000000000a"
    with pytest.raises(InputError):
        build("dd", "datadog", {"url": "http://169.254.169.254", "api_key": {"env": "A"}, "app_key": {"env": "B"}})
    with pytest.raises(InputError):
        build("dd", "datadog", {"url": "ftp://x", "api_key": {"env": "A"}, "app_key": {"env": "B"}})
    with pytest.raises(InputError):
        build("dd", "datadog", {"site": "datadoghq.eu"})           # keys are required


def test_errors_are_one_line_without_secrets(dd):
    c = _conn(dd.url)
    dd.routes["/api/v1/validate"] = lambda _r: (403, {"errors": ["Forbidden"]})
    with pytest.raises(SourceError) as ei:
        c.check()
    assert str(ei.value).endswith("answered HTTP 403 on key validation (forbidden: check the credentials)"), ei.value
    dd.mode = "fail"
    for call in (lambda: c.logs(*_window()), lambda: c.spans(*_window()), c.check):
        with pytest.raises(SourceError) as ei:
            call()
        msg = str(ei.value)
        assert "HTTP 503" in msg and "\n" not in msg and "dd-api-secret" not in msg and "dd-app-secret" not in msg
    dd.close()
    with pytest.raises(SourceError) as ei:
        _conn(dd.url).check()          # a new connection pool: the stand-in's port is closed
    assert "cannot reach Datadog" in str(ei.value)


def test_slow_backend_is_bounded_by_timeout(dd):
    dd.mode, dd.slow_s = "slow", 3.0
    c = _conn(dd.url, timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as ei:
        c.logs(*_window())
    assert time.monotonic() - t0 < 2.0 and "did not answer" in str(ei.value)
