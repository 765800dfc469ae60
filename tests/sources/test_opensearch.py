"""OpenSearchConnector (opensearch-py) against a loopback stand-in of the OpenSearch REST API.

Shapes follow the OpenSearch 2.x REST API reference: GET / (cluster info: {"name", "cluster_name",
"cluster_uuid", "version": {"distribution": "opensearch", "number", ...}, "tagline"}); POST
/<index>/_search with a bool/filter query, sort and search_after -> {"took", "timed_out", "_shards",
"hits": {"total": {"value", "relation"}, "max_score": null, "hits": [{"_index", "_id", "_score": null,
"_source": {...}, "sort": [<epoch ms>, <tiebreaker>]}]}}; errors as {"error": {"root_cause": [...],
"type", "reason"}, "status"}. Documents are ECS-style (``@timestamp``, ``service.name`` nested,
``log.level`` as a flat dotted key, ``message``, ``trace.id``, ``span.id``). Data: the real Nezha
Train-Ticket lines of two traces through the faulty ts-contacts-service."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from sources.vendor_standins import FAULTY, TRACES, Request, StandIn, nezha_slice
from vigil.sources.connector import SourceError, build
from vigil.sources.opensearch import field_of


def _docs():
    logs, _ = nezha_slice()
    out = []
    for i, r in enumerate(logs.itertuples()):
        m = re.search(r"\b(ERROR|WARN|INFO|DEBUG)\b", r.line)
        ts_ms = int(r.ts_ns // 1_000_000)
        iso = datetime.fromtimestamp(r.ts_ns / 1e9, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        out.append((ts_ms, i, {"@timestamp": iso, "service": {"name": r.service},
                               "log.level": m.group(1).lower() if m else None, "message": r.line,
                               "trace": {"id": r.trace_id}, "span.id": r.span_id,
                               "kubernetes": {"pod": {"name": r.pod}}}))
    return out


def search(req: Request):
    body = req.body
    filters = body["query"]["bool"]["filter"]
    rng = next(f["range"]["@timestamp"] for f in filters if "range" in f)
    assert rng["format"] == "epoch_millis"
    terms = next((f["terms"]["service.name"] for f in filters if "terms" in f), None)
    phrase = next((f["match_phrase"]["message"] for f in filters if "match_phrase" in f), None)
    assert body["sort"][0] == {"@timestamp": {"order": "asc"}}
    after = tuple(body.get("search_after") or (-1, -1))
    hits = [(t, i, d) for t, i, d in _docs() if rng["gte"] <= t <= rng["lte"]
            and (terms is None or d["service"]["name"] in terms) and (phrase is None or phrase in d["message"])
            and (t, i) > after]
    hits = hits[: body.get("size", 10)]
    return 200, {"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                 "hits": {"total": {"value": len(hits), "relation": "gte"}, "max_score": None,
                          "hits": [{"_index": "logs-trainticket-2023.01.29", "_id": f"doc{i}", "_score": None,
                                    "_source": d, "sort": [t, i]} for t, i, d in hits]}}


def root(req: Request):
    if req.path == "/" and req.method == "GET":
        return 200, {"name": "opensearch-node1", "cluster_name": "vigil-test", "cluster_uuid": "q8Zc2lKkT0e",
                     "version": {"distribution": "opensearch", "number": "2.17.1", "build_type": "tar",
                                 "build_hash": "1893d20", "build_date": "2024-09-26T21:59:52Z",
                                 "build_snapshot": False, "lucene_version": "9.11.1",
                                 "minimum_wire_compatibility_version": "7.10.0",
                                 "minimum_index_compatibility_version": "7.0.0"},
                     "tagline": "The OpenSearch Project: https://opensearch.org/"}
    if req.path.endswith("/_search") and req.path.startswith("/logs-"):
        return search(req)
    return 404, {"error": {"root_cause": [{"type": "index_not_found_exception", "reason": "no such index [x]"}],
                           "type": "index_not_found_exception", "reason": "no such index [x]"}, "status": 404}


@pytest.fixture
def osearch():
    with StandIn({"/": root}) as s:
        yield s


def _window():
    logs, _ = nezha_slice()
    return logs.ts_ns.min() / 1e9 - 1, logs.ts_ns.max() / 1e9 + 1


def test_logs_frame_paged_with_search_after(osearch):
    logs, _ = nezha_slice()
    c = build("os", "opensearch", {"url": osearch.url, "page_size": 50})
    df = c.logs(*_window())
    assert len(df) == len(logs) and not df.duplicated(["ts", "body"]).any()
    assert np.allclose(sorted(df.ts), sorted((logs.ts_ns // 1_000_000) / 1e3), atol=1e-6)   # epoch s (ms precision)
    assert set(df.resource) == set(logs.service)
    assert set(df[df.body.str.contains(" ERROR ")].level) == {"ERROR"}
    assert set(df[df.body.str.contains(" INFO ")].level) == {"INFO"}
    assert set(df.trace_id) == set(TRACES) and set(df.span_id) == set(logs.span_id)
    searches = [r for r in osearch.requests if r.path.endswith("/_search")]
    assert len(searches) == -(-len(logs) // 50) + (len(logs) % 50 == 0)
    assert "search_after" not in searches[0].body and searches[1].body["search_after"] == \
        [int(logs.ts_ns.iloc[49] // 1_000_000), 49]
    assert searches[0].path == "/logs-%2A/_search" or searches[0].path == "/logs-*/_search"


def test_resources_contains_limit_and_max_rows(osearch):
    c = build("os", "opensearch", {"url": osearch.url})
    df = c.logs(*_window(), resources=[FAULTY], contains="ERROR")
    assert len(df) >= 2 and set(df.resource) == {FAULTY} and set(df.level) == {"ERROR"}
    assert len(c.logs(*_window(), limit=7)) == 7
    assert len(build("o", "opensearch", {"url": osearch.url, "max_rows": 11, "page_size": 4}).logs(*_window())) == 11


def test_check_and_field_lookup(osearch):
    c = build("os", "opensearch", {"url": osearch.url})
    assert c.check() == f"opensearch 2.17.1 cluster 'vigil-test' at {osearch.url.split('//')[1]} answered"
    assert field_of({"a": {"b.c": 1}}, "a.b.c") == 1 and field_of({"a.b": {"c": 2}}, "a.b.c") == 2
    assert field_of({"a": {"b": {"c": 3}}}, "a.b.c") == 3 and field_of({"a": 1}, "a.b") is None


def test_basic_auth_sent_and_errors_are_one_line(osearch, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "hunter2-secret")
    c = build("os", "opensearch", {"url": osearch.url, "username": "vigil", "password": {"env": "OS_PASSWORD"},
                                    "index": "missing"})
    with pytest.raises(SourceError) as ei:
        c.logs(*_window())
    # the error type (one identifier) but not the answer's text
    assert "HTTP 404" in str(ei.value) and str(ei.value).endswith(": index_not_found_exception"), ei.value
    assert "no such index" not in str(ei.value) and "hunter2" not in str(ei.value)
    assert osearch.requests[-1].headers["authorization"].startswith("Basic ")
    osearch.mode = "fail"
    for call in (lambda: c.logs(*_window()), c.check):
        with pytest.raises(SourceError) as ei:
            call()
        assert "HTTP 503" in str(ei.value) and "\n" not in str(ei.value)
    osearch.close()
    with pytest.raises(SourceError) as ei:
        build("os", "opensearch", {"url": osearch.url}).check()
    assert "cannot reach OpenSearch" in str(ei.value) and "\n" not in str(ei.value)


def test_slow_backend_is_bounded_by_timeout(osearch):
    osearch.mode, osearch.slow_s = "slow", 3.0
    c = build("os", "opensearch", {"url": osearch.url, "timeout_s": 0.5})
    t0 = time.monotonic()
    with pytest.raises(SourceError) as ei:
        c.logs(*_window())
    assert time.monotonic() - t0 < 2.0 and "did not answer" in str(ei.value)
