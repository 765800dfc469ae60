"""OTLP/HTTP ingestion: the real OpenTelemetry Python SDK exports traces, logs and metrics (protobuf,
plain and gzip) to a real server; OTLP/JSON as the specification writes it; partial success for
invalid items; and requests that must be refused without storing anything."""

from __future__ import annotations

import gzip
import json
import os
import time

import httpx
import pytest
from e2e.kit import live_server
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from vigil.model import Role

PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("otlp"), workers=1, max_otlp_bytes=256 * 1024,
                     max_otlp_decoded_bytes=1024 * 1024) as lv:
        yield lv


def _space(live, name: str) -> tuple[str, str]:
    live.space(name)
    return live.token(name, Role.OPERATOR), live.token(name, Role.VIEWER)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
def test_the_sdk_exports_traces_and_logs(live, compression):
    space = f"sdk-{compression.value}"
    op, _ = _space(live, space)
    headers = {"Authorization": f"Bearer {op}"}
    res = Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=live.url + "/v1/traces", headers=headers,
                                                               compression=compression)))
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=live.url + "/v1/logs",
                                                                         headers=headers, compression=compression)))
    tracer, logger = tp.get_tracer("t"), lp.get_logger("t")
    with tracer.start_as_current_span("POST /checkout") as parent:
        with tracer.start_as_current_span("charge card") as child:
            child.set_status(Status(StatusCode.ERROR, "declined"))
            ctx = child.get_span_context()
            logger.emit(LogRecord(timestamp=time.time_ns(), trace_id=ctx.trace_id, span_id=ctx.span_id,
                                  severity_number=SeverityNumber.ERROR, body="card declined: insufficient funds"))
        logger.emit(LogRecord(timestamp=time.time_ns(), severity_number=SeverityNumber.INFO,
                              body={"event": "checkout", "items": 3}))
    tp.shutdown()
    lp.shutdown()
    tel = live.runtime.telemetry
    spans = tel.spans(space, 0, 2e10).sort_values("start").reset_index(drop=True)
    assert list(spans["operation"]) == ["POST /checkout", "charge card"]
    assert spans.loc[0, "span_id"] == format(parent.get_span_context().span_id, "016x")
    assert spans.loc[1, "parent_id"] == spans.loc[0, "span_id"] and spans.loc[0, "parent_id"] == ""
    assert spans.loc[0, "trace_id"] == format(parent.get_span_context().trace_id, "032x")
    assert list(spans["error"]) == [False, True] and (spans["resource"] == "checkout").all()
    assert 0 < spans.loc[1, "duration_ms"] <= spans.loc[0, "duration_ms"]
    logs = tel.logs(space, 0, 2e10)
    assert list(logs["level"]) == ["ERROR", "INFO"]
    assert logs.iloc[0]["body"] == "card declined: insufficient funds"
    assert logs.iloc[0]["span_id"] == spans.loc[1, "span_id"]
    assert logs.iloc[1]["span_id"] == spans.loc[0, "span_id"]      # the SDK took the active span's context
    assert "event=checkout" in logs.iloc[1]["body"]
    assert [r.name for r in tel.topology(space).resources] == ["checkout"]


def test_the_sdk_exports_metrics_as_series_the_engine_reads(live):
    op, _ = _space(live, "metrics")
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=live.url + "/v1/metrics",
                                                              headers={"Authorization": f"Bearer {op}"}),
                                           export_interval_millis=3_600_000)
    mp = MeterProvider(resource=Resource.create({"service.name": "cart"}), metric_readers=[reader])
    meter = mp.get_meter("m")
    requests = meter.create_counter("http.server.request.count")
    duration = meter.create_histogram("http.server.duration", unit="ms")
    inflight = meter.create_up_down_counter("http.server.active_requests")
    meter.create_observable_gauge("process.cpu.utilization", callbacks=[lambda _o: [Observation(0.25)]])
    for _ in range(10):
        requests.add(1, {"route": "/cart"})
        duration.record(20.0, {"route": "/cart"})
    inflight.add(3)
    mp.force_flush()
    time.sleep(0.5)
    for _ in range(30):
        requests.add(1, {"route": "/cart"})
        duration.record(40.0, {"route": "/cart"})
    mp.force_flush()
    mp.shutdown()
    m = live.runtime.telemetry.metrics("metrics", 0, 2e10)
    series = {n: g["value"].tolist() for n, g in m.groupby("name")}
    assert series["process.cpu.utilization"][0] == pytest.approx(0.25)
    assert series["http.server.active_requests"][0] == 3
    # cumulative counters and histograms: rates and means over the interval between two exports
    rate = series["http.server.request.count.rate{route=/cart}"]
    assert 30 < rate[0] < 120 and rate[1:] == [0.0]     # 30 requests in ~0.5 s; none before shutdown's export
    assert series["http.server.duration.mean{route=/cart}"] == [pytest.approx(40.0)]   # no requests: no mean
    assert len(series["http.server.duration.count.rate{route=/cart}"]) == 2


def test_otlp_json_as_the_specification_writes_it(live):
    op, _ = _space(live, "json")
    now = time.time_ns()
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                               "scopeSpans": [{"scope": {"name": "x"}, "spans": [{
                                   "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                   "parentSpanId": "eee19b7ec3c1b173", "name": "GET /users", "kind": 2,
                                   "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 12_000_000),
                                   "status": {"code": 2}}]}]}]}
    with live.client(op) as c:
        r = c.post("/v1/traces", json=body)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == {}
        logs = {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                                  "scopeLogs": [{"logRecords": [{"timeUnixNano": str(now), "severityNumber": 17,
                                                                 "body": {"stringValue": "boom"},
                                                                 "traceId": "5b8efff798038103d269b633813fc60c"}]}]}]}
        r = c.post("/v1/logs", content=gzip.compress(json.dumps(logs).encode()),
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status_code == 200, r.text
    sp = live.runtime.telemetry.spans("json", 0, 2e10).iloc[0]
    assert (sp["trace_id"], sp["span_id"], sp["parent_id"]) == ("5b8efff798038103d269b633813fc60c",
                                                                "eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert sp["duration_ms"] == pytest.approx(12.0) and bool(sp["error"])
    lg = live.runtime.telemetry.logs("json", 0, 2e10).iloc[0]
    assert (lg["level"], lg["body"], lg["trace_id"]) == ("ERROR", "boom", "5b8efff798038103d269b633813fc60c")


def test_invalid_items_are_rejected_one_by_one_with_partial_success(live):
    op, _ = _space(live, "partial")
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    spans = rs.scope_spans.add().spans
    for i, (tid, sid) in enumerate([(os.urandom(16), os.urandom(8)), (b"abc", os.urandom(8)),
                                    (os.urandom(16), b""), (os.urandom(16), os.urandom(8))]):
        sp = spans.add()
        sp.trace_id, sp.span_id, sp.name = tid, sid, f"op{i}"
        sp.start_time_unix_nano, sp.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_001_000_000
    with live.client(op) as c:
        r = c.post("/v1/traces", content=req.SerializeToString(), headers=PB)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 2 and "16-byte trace_id" in resp.partial_success.error_message
    stored = live.runtime.telemetry.spans("partial", 0, 2e10)
    assert sorted(stored["operation"]) == ["op0", "op3"] and set(stored["resource"]) == {"unknown_service"}


def test_a_source_can_name_resources_by_another_attribute(live):
    op, _ = _space(live, "k8s")
    admin = live.token("k8s", Role.ADMIN)
    with live.client(admin) as c:
        r = c.put("/v1/spaces/k8s/sources/otel", json={"kind": "otlp",
                                                        "config": {"resource_attribute": "k8s.deployment.name"}})
        assert r.status_code == 200
        assert [s["name"] for s in c.get("/v1/spaces/k8s/sources").json()] == ["embedded", "otel"]
    tp = TracerProvider(resource=Resource.create({"service.name": "svc", "k8s.deployment.name": "cart-v2"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=live.url + "/v1/traces",
                                                               headers={"Authorization": f"Bearer {op}"})))
    with trace.get_tracer("t", tracer_provider=tp).start_as_current_span("x"):
        pass
    tp.shutdown()
    assert set(live.runtime.telemetry.spans("k8s", 0, 2e10)["resource"]) == {"cart-v2"}


def test_bad_otlp_requests_are_refused_and_store_nothing(live):
    op, viewer = _space(live, "refused")
    tel = live.runtime.telemetry
    good = ExportTraceServiceRequest()
    sp = good.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = os.urandom(16), os.urandom(8), "x"
    sp.start_time_unix_nano, sp.end_time_unix_nano = 1, 2
    ok = good.SerializeToString()
    with live.client(op) as c:
        r = c.post("/v1/traces", content=b"\xff\xff\xff garbage", headers=PB)
        assert r.status_code == 400 and r.headers["content-type"] == "application/x-protobuf"
        assert b"not a valid OTLP protobuf ExportTraceServiceRequest" in r.content      # a google.rpc.Status
        r = c.post("/v1/traces", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["message"] == "the body is not valid JSON"
        r = c.post("/v1/traces", content=b"[[[[" * 50_000 + b"]]]]" * 50_000,
                   headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 413)
        r = c.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]})
        assert r.status_code == 400 and "not hex" in r.json()["message"]
        r = c.post("/v1/traces", json={"resourceSpans": "nope"})
        assert r.status_code == 400 and "not a valid OTLP/JSON" in r.json()["message"]
        r = c.post("/v1/traces", content=ok, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "unsupported Content-Type" in r.json()["error"]
        r = c.post("/v1/traces", content=ok, headers={**PB, "Content-Encoding": "br"})
        assert r.status_code == 415
        r = c.post("/v1/traces", content=b"\x1f\x8b\x08 not gzip", headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 400 and b"not valid gzip" in r.content
        r = c.post("/v1/traces", content=gzip.compress(ok)[:-6], headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 400 and b"truncated" in r.content
        bomb = gzip.compress(b"\x00" * (4 * 1024 * 1024))             # 4 MiB of zeros in ~4 KiB
        r = c.post("/v1/traces", content=bomb, headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 413 and b"once decompressed" in r.content
        r = c.post("/v1/traces", content=os.urandom(300 * 1024), headers=PB)
        assert r.status_code == 413 and "larger than" in r.json()["error"]
    with live.client(viewer) as c:
        assert c.post("/v1/traces", content=ok, headers=PB).status_code == 403
    assert httpx.post(live.url + "/v1/traces", content=ok, headers=PB).status_code == 401
    assert tel.counts("refused") == {"metrics": 0, "logs": 0, "spans": 0, "changes": 0, "alerts": 0}
    with live.client(op) as c:      # and the server is fine afterwards
        assert c.post("/v1/traces", content=ok, headers=PB).status_code == 200
    assert tel.counts("refused")["spans"] == 1
    metrics = httpx.get(live.url + "/metrics").text
    assert 'vigil_otlp_requests_total{outcome="rejected",signal="traces"}' in metrics
