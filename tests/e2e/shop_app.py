"""A small instrumented shop, frontend -> cart -> db, built on the real OpenTelemetry Python SDK.

Each service has its own SDK providers (resource ``service.name``) exporting traces, logs and
metrics over OTLP/HTTP (protobuf) to Vigil. It also serves Prometheus metrics (``shop_error_ratio``
per service) for a real Prometheus to scrape. After ``--fault-after`` seconds the cart service
starts failing: half of its calls error after a 150 ms stall, with an ERROR log each time; the
frontend sees the errors and the latency as symptoms.

With ``--require-env NAME`` the cart reads its store's address from the environment variable NAME at
start; a release that ships without it (a typo in the deploy's environment) fails every cart call
with ``KeyError: 'NAME'``, at once: the deploy is the cause, the cart's errors its effect.

Run: python shop_app.py --otlp http://127.0.0.1:8080 --token T --prom-port 9101 --fault-after 30
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from collections import deque

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

SERVICES = ("frontend", "cart", "db")


class Service:
    def __init__(self, name: str, endpoint: str, headers: dict[str, str], export_ms: int = 250) -> None:
        res = Resource.create({"service.name": name, "service.namespace": "shop"})
        queue = {"max_queue_size": 200_000, "max_export_batch_size": 2048, "schedule_delay_millis": export_ms}
        self.tp = TracerProvider(resource=res)
        self.tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces",
                                                                       headers=headers), **queue))
        self.lp = LoggerProvider(resource=res)
        self.lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs",
                                                                                 headers=headers), **queue))
        self.mp = MeterProvider(resource=res, metric_readers=[PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", headers=headers), export_interval_millis=1000)])
        self.tracer = self.tp.get_tracer("shop")
        self.logger = self.lp.get_logger("shop")
        meter = self.mp.get_meter("shop")
        self.requests = meter.create_counter("http.server.request.count")
        self.errors = meter.create_counter("http.server.error.count")
        self.duration = meter.create_histogram("http.server.duration", unit="ms")

    def log(self, span, level: str, body: str, t_ns: int) -> None:
        ctx = span.get_span_context()
        self.logger.emit(LogRecord(timestamp=t_ns, observed_timestamp=t_ns, trace_id=ctx.trace_id,
                                   span_id=ctx.span_id, trace_flags=ctx.trace_flags, severity_text=level,
                                   severity_number=SeverityNumber.ERROR if level == "ERROR" else SeverityNumber.INFO,
                                   body=body))

    def shutdown(self) -> None:
        for p in (self.tp, self.lp, self.mp):
            p.shutdown()


class Shop:
    def __init__(self, endpoint: str, token: str, export_ms: int = 250) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.svc = {n: Service(n, endpoint, headers, export_ms) for n in SERVICES}
        self.faulty = False
        self.misconfigured = ""              # the environment variable a broken release lacks
        self.window: deque = deque()          # (t, service, error) of the last seconds, for Prometheus
        self.lock = threading.Lock()
        self.rng = random.Random(7)

    def request(self, user: int, at_ns: int | None = None) -> None:
        """One checkout: frontend calls cart, cart calls db; times are simulated, not slept."""
        rng = self.rng
        t0 = at_ns or time.time_ns()
        fe, cart, db = self.svc["frontend"], self.svc["cart"], self.svc["db"]
        root = fe.tracer.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=t0)
        c0 = t0 + int(rng.uniform(0.5, 1.5) * 1e6)
        cspan = cart.tracer.start_span("POST /cart/items", kind=SpanKind.SERVER, start_time=c0,
                                       context=trace.set_span_in_context(root))
        d0 = c0 + int(rng.uniform(0.5, 1.0) * 1e6)
        dspan = db.tracer.start_span("SELECT cart_items", kind=SpanKind.CLIENT, start_time=d0,
                                     context=trace.set_span_in_context(cspan))
        d1 = d0 + int(rng.uniform(0.8, 1.6) * 1e6)
        dspan.end(end_time=d1)
        db.log(dspan, "INFO", f"query cart_items rows={rng.randint(1, 9)}", d1)
        failed = bool(self.misconfigured) or (self.faulty and rng.random() < 0.5)
        c1 = d1 + int((rng.uniform(150, 170) if self.faulty else rng.uniform(1.0, 3.0)) * 1e6)
        if self.misconfigured:
            cspan.set_status(Status(StatusCode.ERROR, f"KeyError: '{self.misconfigured}'"))
            cart.log(cspan, "ERROR", f"cart store not configured: KeyError: '{self.misconfigured}'", c1)
        elif failed:
            cspan.set_status(Status(StatusCode.ERROR, "cart store unavailable"))
            cart.log(cspan, "ERROR", "cart store unavailable: connection pool exhausted after 150 ms", c1)
        else:
            cart.log(cspan, "INFO", f"added item to cart of user {user}", c1)
        cspan.end(end_time=c1)
        f1 = c1 + int(rng.uniform(0.5, 1.5) * 1e6)
        if failed:
            root.set_status(Status(StatusCode.ERROR, "upstream error"))
            fe.log(root, "WARN", "checkout failed: upstream returned 503", f1)
        else:
            fe.log(root, "INFO", f"checkout ok for user {user}", f1)
        root.end(end_time=f1)
        for name, start, end, err in (("frontend", t0, f1, failed), ("cart", c0, c1, failed),
                                      ("db", d0, d1, False)):
            s = self.svc[name]
            s.requests.add(1)
            if err:
                s.errors.add(1)
            s.duration.record((end - start) / 1e6)
        if at_ns is not None:
            return
        now = time.time()
        with self.lock:
            for name, err in (("frontend", failed), ("cart", failed), ("db", False)):
                self.window.append((now, name, err))

    def error_ratio(self, service: str, horizon_s: float = 3.0) -> float:
        now = time.time()
        with self.lock:
            while self.window and self.window[0][0] < now - horizon_s:
                self.window.popleft()
            rows = [e for t, s, e in self.window if s == service]
        return sum(rows) / len(rows) if rows else 0.0

    def backfill(self, seconds: float, rps: float) -> int:
        """Normal traffic of the past ``seconds`` (explicit SDK timestamps), as history to compare with."""
        now = time.time_ns()
        n = int(seconds * rps)
        for i in range(n):
            self.request(i, at_ns=now - int((seconds - i / rps) * 1e9))
        return n

    def run(self, seconds: float, rps: float, fault_after: float | None = None) -> None:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            if fault_after is not None and time.monotonic() - start >= fault_after:
                self.faulty = True
            self.request(i)
            i += 1
            nxt = start + i / rps
            time.sleep(max(0.0, nxt - time.monotonic()))

    def shutdown(self) -> None:
        for s in self.svc.values():
            s.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--otlp", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--prom-port", type=int, default=0)
    ap.add_argument("--fault-after", type=float, default=None)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--rps", type=float, default=25.0)
    ap.add_argument("--backfill", type=float, default=0.0, help="seconds of past normal traffic to send first")
    ap.add_argument("--require-env", default="", help="the cart's store address comes from this variable")
    args = ap.parse_args()
    shop = Shop(args.otlp, args.token)
    if args.backfill:
        shop.backfill(args.backfill, args.rps)
    if args.require_env and not os.environ.get(args.require_env):
        shop.misconfigured = args.require_env
    if args.prom_port:
        from prometheus_client import Gauge, start_http_server
        g = Gauge("shop_error_ratio", "Share of failed requests over the last 3 s.", ["service"])
        for s in SERVICES:
            g.labels(s).set_function(lambda s=s: shop.error_ratio(s))
        start_http_server(args.prom_port, addr="127.0.0.1")
    try:
        shop.run(args.duration, args.rps, args.fault_after)
    finally:
        shop.shutdown()


if __name__ == "__main__":
    main()
