"""The server's own Prometheus metrics (served at /metrics). No label carries a space name: the
endpoint needs no token, and space names are not for everyone to read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from vigil.store.state import StateStore


class _StateCollector:
    """Investigations by status and the queue depth, read from the state database at scrape time."""

    def __init__(self, state: StateStore, workers) -> None:
        self.state = state
        self.workers = workers

    def collect(self):
        inv = GaugeMetricFamily("vigil_investigations", "Investigations by status.", labels=["status"])
        for status, n in sorted(self.state.count_investigations().items()):
            inv.add_metric([status], n)
        yield inv
        depth = self.state.queue_depth()
        q = GaugeMetricFamily("vigil_queue_depth", "Investigation jobs waiting for a worker.")
        q.add_metric([], depth.get("queued", 0))
        yield q
        r = GaugeMetricFamily("vigil_jobs_running", "Investigation jobs being run.")
        r.add_metric([], depth.get("running", 0))
        yield r
        w = GaugeMetricFamily("vigil_workers", "Investigation workers alive.")
        w.add_metric([], self.workers.alive())
        yield w


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.otlp_items = Counter("vigil_otlp_items", "Telemetry items stored from OTLP (spans, log records, "
                                  "metric points).", ["signal"], registry=r)
        self.otlp_rejected = Counter("vigil_otlp_rejected_items", "OTLP items rejected as invalid.", ["signal"],
                                     registry=r)
        self.otlp_requests = Counter("vigil_otlp_requests", "OTLP export requests by outcome.",
                                     ["signal", "outcome"], registry=r)
        self.webhooks = Counter("vigil_webhook_requests", "Alert webhook deliveries accepted.", ["kind"], registry=r)
        self.webhook_rejections = Counter("vigil_webhook_rejections", "Alert webhook deliveries rejected.",
                                          ["kind", "reason"], registry=r)
        self.alerts = Counter("vigil_alerts", "Delivered alerts by what became of them (new-incident, grouped, "
                              "duplicate, resolved, ignored).", ["outcome"], registry=r)
        self.finished = Counter("vigil_investigations_finished", "Investigations finished by this process.",
                                ["status"], registry=r)
        self.duration = Histogram("vigil_investigation_seconds", "Time to run one investigation.",
                                  buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r)
        self.http = Counter("vigil_http_responses", "HTTP responses by route and status class.",
                            ["route", "code"], registry=r)

    def watch_state(self, state: StateStore, workers) -> None:
        self.registry.register(_StateCollector(state, workers))
