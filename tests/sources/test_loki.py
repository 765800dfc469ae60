"""LokiConnector against a loopback stand-in of Loki's HTTP API.

Shapes follow the Grafana Loki 3.x HTTP API reference ("Query logs within a range of time",
GET /loki/api/v1/query_range: {"status": "success", "data": {"resultType": "streams"|"matrix",
"result": [{"stream": {labels}, "values": [["<unix ns>", "<line>"], ...]}] | [{"metric": {labels},
"values": [[<unix s>, "<value>"], ...]}], "stats": {...}}}; GET /loki/api/v1/labels and
/loki/api/v1/label/<name>/values: {"status": "success", "data": [...]}). Stream labels carry the
``detected_level`` Loki 3 adds (structured metadata is merged into the stream labels in the default
encoding). The stand-in applies ``start`` (inclusive), ``end`` (exclusive), ``limit`` and
``direction=forward`` as Loki does, plus the selector's ``service_name=~`` and a ``|=`` line filter.
Data: the real Nezha Train-Ticket lines of two traces through the faulty ts-contacts-service."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from sources.vendor_standins import FAULTY, TRACES, Request, StandIn, nezha_slice
from vigil.errors import InputError
from vigil.sources.connector import SourceError, build

NO_LEVEL_SERVICE = "ts-preserve-service"     # its streams carry `app`, no service_name and no level label


def _level(line: str) -> str:
    m = re.search(r"\b(ERROR|WARN|INFO|DEBUG)\b", line)
    return m.group(1).lower() if m else "unknown"


def _entries():
    logs, _ = nezha_slice()
    out = []
    for r in logs.itertuples():
        if r.service == NO_LEVEL_SERVICE:
            labels = {"app": r.service, "pod": r.pod, "namespace": "train-ticket"}
        else:
            labels = {"service_name": r.service, "pod": r.pod, "namespace": "train-ticket",
                      "detected_level": _level(r.line)}
        out.append((int(r.ts_ns), r.line, labels))
    return out


def query_range(req: Request) -> tuple[int, object]:
    q = req.params["query"]
    start, end = int(req.params["start"]), int(req.params["end"])
    limit = int(req.params.get("limit", 100))
    assert req.params.get("direction") == "forward"
    if "rate(" in q:        # a metric query: error lines per second per service, a matrix
        step = float(req.params["step"])
        series: dict[str, list] = {}
        for ts, line, labels in _entries():
            if " ERROR " in line and start <= ts < end and "service_name" in labels:
                bucket = (ts // int(step * 1e9)) * step
                series.setdefault(labels["service_name"], {}).setdefault(bucket, 0)
                series[labels["service_name"]][bucket] += 1
        result = [{"metric": {"service_name": s}, "values": [[t, str(n / step)] for t, n in sorted(b.items())]}
                  for s, b in series.items()]
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": result, "stats": {}}}
    selector = q[q.index("{") + 1:q.index("}")]
    matchers = [(k, op, re.compile(v.replace("\\\\", "\\")))
                for k, op, v in re.findall(r'(\w+)\s*(=~|=)\s*"([^"]*)"', selector)]
    f = re.search(r'\|= "([^"]*)"', q)
    # Loki semantics: every matcher must hold; a missing label is the empty string
    hits = [e for e in _entries() if start <= e[0] < end
            and all(rx.fullmatch(e[2].get(k, "")) if op == "=~" else e[2].get(k, "") == rx.pattern
                    for k, op, rx in matchers)
            and (f is None or f.group(1) in e[1])]
    hits.sort(key=lambda e: e[0])
    hits = hits[:limit]
    streams: dict[tuple, dict] = {}
    for ts, line, labels in hits:
        key = tuple(sorted(labels.items()))
        streams.setdefault(key, {"stream": labels, "values": []})["values"].append([str(ts), line])
    return 200, {"status": "success",
                 "data": {"resultType": "streams", "result": list(streams.values()),
                          "stats": {"summary": {"totalEntriesReturned": len(hits)}}}}


def labels(_req: Request) -> tuple[int, object]:
    return 200, {"status": "success", "data": ["app", "detected_level", "namespace", "pod", "service_name"]}


def label_values(req: Request) -> tuple[int, object]:
    name = req.path.rsplit("/", 2)[-2]
    vals = sorted({e[2][name] for e in _entries() if name in e[2]})
    return 200, {"status": "success", "data": vals}


ROUTES = {"/loki/api/v1/query_range": query_range, "/loki/api/v1/labels": labels,
          "/loki/api/v1/label/": label_values}


@pytest.fixture
def loki():
    with StandIn(dict(ROUTES)) as s:
        yield s


def _window():
    logs, _ = nezha_slice()
    return logs.ts_ns.min() / 1e9 - 1, logs.ts_ns.max() / 1e9 + 1


def test_logs_frame_from_real_lines(loki):
    logs, _ = nezha_slice()
    c = build("loki", "loki", {"url": loki.url, "selector": '{namespace="train-ticket"}'})
    start, end = _window()
    df = c.logs(start, end)
    assert len(df) == len(logs)
    assert list(df.columns) == ["resource", "ts", "level", "body", "trace_id", "span_id"]
    # epoch seconds, ascending, exactly the recorded instants
    assert df.ts.is_monotonic_increasing
    assert np.allclose(sorted(df.ts), sorted(logs.ts_ns / 1e9), rtol=0, atol=1e-6)
    assert set(df.resource) == set(logs.service)           # incl. the service named only by `app`
    err = df[df.body.str.contains(" ERROR ")]
    assert len(err) >= 2 and set(err.level) == {"ERROR"}
    assert set(df[df.body.str.contains(" INFO ")].level) == {"INFO"}
    # ts-preserve-service has no level label: the level is parsed from the line
    pres = df[df.resource == NO_LEVEL_SERVICE]
    assert len(pres) and set(pres.level) <= {"INFO", "ERROR", "WARN", "DEBUG"} and "" not in set(pres.level)
    assert set(df.trace_id) == set(TRACES)
    joined = df.merge(logs, left_on=["trace_id", "span_id"], right_on=["trace_id", "span_id"])
    assert len(joined) >= len(logs)                        # span ids parsed from the lines match the recording
    assert (df[df.resource == FAULTY].level == "ERROR").any()


def test_pagination_by_last_timestamp_and_window_split(loki):
    logs, _ = nezha_slice()
    start, end = _window()
    c = build("loki", "loki", {"url": loki.url, "page_limit": 17, "split_s": 5,
                               "selector": '{namespace=~"train-.*"}'})
    df = c.logs(start, end)
    assert len(df) == len(logs)
    assert not df.duplicated(["ts", "body", "resource"]).any()
    calls = [r for r in loki.requests if r.path.endswith("query_range")]
    assert len(calls) > len(logs) // 17
    assert all(int(r.params["end"]) - int(r.params["start"]) <= 5e9 for r in calls)
    assert all(r.params["limit"] == "17" for r in calls[:1])
    # a follow-up page starts at the last timestamp of the previous page of the same slice
    first = calls[0]
    page = query_range(first)[1]["data"]["result"]
    last = max(int(v[0]) for s in page for v in s["values"])
    if len([v for s in page for v in s["values"]]) == 17:
        assert int(calls[1].params["start"]) == last


def test_entries_sharing_a_timestamp_across_pages():
    """Loki pages forward from the last timestamp, so entries at that instant come back again: none may
    be lost or repeated (10 lines at one nanosecond, pages of 4)."""
    t = 1674981797121704441
    lines = [[str(t), f"16:43:17.120 ERROR line {i}"] for i in range(10)] + [[str(t + 1), "after"]]

    def qr(req: Request):
        vals = [v for v in lines if int(req.params["start"]) <= int(v[0]) < int(req.params["end"])]
        vals = vals[:int(req.params["limit"])]
        return 200, {"status": "success", "data": {"resultType": "streams", "stats": {},
                     "result": [{"stream": {"service_name": "svc"}, "values": vals}]}}

    with StandIn({"/loki/api/v1/query_range": qr}) as s:
        df = build("l", "loki", {"url": s.url, "page_limit": 4}).logs(t / 1e9 - 1, t / 1e9 + 1)
    assert sorted(df.body) == sorted(v[1] for v in lines)
    assert set(df.level[df.body != "after"]) == {"ERROR"}


def test_resources_contains_and_limit(loki):
    start, end = _window()
    c = build("loki", "loki", {"url": loki.url})
    df = c.logs(start, end, resources=[FAULTY], contains="ERROR")
    assert len(df) >= 2 and set(df.resource) == {FAULTY} and set(df.level) == {"ERROR"}
    q = loki.requests[-1].params["query"]
    assert 'service_name=~"ts\\\\-contacts\\\\-service"' in q and '|= "ERROR"' in q
    assert len(c.logs(start, end, limit=5)) == 5
    assert len(build("l", "loki", {"url": loki.url, "max_rows": 9}).logs(start, end)) == 9


def test_metric_query_matrix_and_topology_and_check(loki):
    start, end = _window()
    c = build("loki", "loki", {"url": loki.url, "metric_queries": [
        {"name": "log_error_rate", "query": 'sum by (service_name) (rate({service_name=~".+"} |= " ERROR " [1m]))'}]})
    assert "metrics" in c.roles
    m = c.metrics(start, end)
    assert set(m.name) == {"log_error_rate"} and FAULTY in set(m.resource) and (m.value > 0).all()
    assert (m.ts > 1.6e9).all() and (m.ts < 1.7e9).all()
    topo = c.topology()
    assert FAULTY in {r.name for r in topo.resources}
    assert "Loki" in c.check() and "service_name" in c.check()
    assert "metrics" not in build("l", "loki", {"url": loki.url}).roles


def test_down_backend_is_one_line_error_without_secret(loki, monkeypatch):
    monkeypatch.setenv("LOKI_TOKEN", "s3cret-token-value")
    c = build("loki", "loki", {"url": loki.url, "token": {"env": "LOKI_TOKEN"}, "tenant": "team-a"})
    loki.mode = "fail"
    with pytest.raises(SourceError) as ei:
        c.logs(*_window())
    msg = str(ei.value)
    assert "HTTP 503" in msg and "\n" not in msg and "s3cret" not in msg
    assert loki.requests[-1].headers["authorization"] == "Bearer s3cret-token-value"
    assert loki.requests[-1].headers["x-scope-orgid"] == "team-a"
    with pytest.raises(SourceError):
        c.check()
    loki.close()
    with pytest.raises(SourceError) as ei:
        build("l", "loki", {"url": loki.url, "timeout_s": 1}).check()
    assert "cannot reach Loki" in str(ei.value) and "\n" not in str(ei.value)


def test_slow_backend_is_bounded_by_timeout(loki):
    loki.mode, loki.slow_s = "slow", 3.0
    c = build("loki", "loki", {"url": loki.url, "timeout_s": 0.5})
    t0 = time.monotonic()
    with pytest.raises(SourceError) as ei:
        c.logs(*_window())
    assert time.monotonic() - t0 < 2.0
    assert "did not answer" in str(ei.value) and "0.5 s" in str(ei.value)


def test_bad_config_is_one_line_input_error():
    with pytest.raises(InputError) as ei:
        build("l", "loki", {"url": "http://127.0.0.1:1", "selector": "service_name=foo"})
    assert "selector" in str(ei.value)
    with pytest.raises(InputError):
        build("l", "loki", {"url": "http://169.254.169.254"})
    with pytest.raises(InputError):
        build("l", "loki", {"url": "http://127.0.0.1:1", "bogus": 1})


def test_router_merges_rows_and_reports_a_dead_loki(loki):
    """Through SpaceSources (what investigations query): the live Loki's rows are merged, the dead one
    becomes a one-line problem instead of failing the query."""
    from vigil.sources.connector import empty
    from vigil.sources.router import SpaceSources

    class Embedded:
        name = "embedded"

        def logs(self, space, *args):
            return empty("logs")

    rows = [{"name": "loki", "kind": "loki", "config": {"url": loki.url, "selector": '{namespace="train-ticket"}'}},
            {"name": "dead", "kind": "loki", "config": {"url": "http://127.0.0.1:1", "timeout_s": 1}}]
    ss = SpaceSources(Embedded(), lambda space: rows)
    try:
        df = ss.logs("shop", *_window())
    finally:
        ss.close()
    assert len(df) == len(nezha_slice()[0]) and df.attrs["rows_by_source"]["loki"] == len(df)
    (problem,) = df.attrs["problems"]
    assert problem.startswith("source 'dead' (loki) failed on logs: cannot reach Loki") and "\n" not in problem
