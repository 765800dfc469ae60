"""Prometheus connector: metrics from PromQL range queries, firing alerts from the rules engine.

Anything that speaks the Prometheus HTTP API works the same way: Prometheus itself, Thanos Query,
Grafana Mimir / Cortex (set ``tenant`` for ``X-Scope-OrgID`` and put the ``/prometheus`` prefix in the
url) and VictoriaMetrics. The engine does not understand PromQL; each configured query says which
engine metric name its result is and which label names the service, so the engine gets plain
``[resource, name, ts, value]`` rows. Values are what Prometheus evaluates at each step (the latest
sample within its lookback window), so a query's ``step_s`` should be near the scrape interval.

Read-only: only ``GET``/``POST`` query endpoints are called."""

from __future__ import annotations

import json
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from vigil.frames import service_of_pod
from vigil.integrations.common import WebhookRejected, labels_fingerprint, parse_time, resource_of
from vigil.model import Alert
from vigil.sources.connector import Connector, HttpConfig, SourceError, empty
from vigil.sources.safety import ResponseTooLarge, http_client, read_capped, unsafe_reason

log = logging.getLogger(__name__)

MAX_POINTS = 11_000          # Prometheus refuses a range query with more points per series than this
_DURATION = re.compile(r"\$__(rate_interval|interval|range)\b")


class PromQuery(BaseModel):
    """One PromQL query whose series become one engine metric.

    ``promql`` may use ``$__interval`` (the step), ``$__rate_interval`` (a window wide enough for
    ``rate()`` to see several scrapes: max(2 x step, 4 x scrape interval)) and ``$__range`` (the whole
    queried window), spelled as in Grafana. Aggregate by the resource label (``sum by (service)``):
    series that map to the same resource are averaged."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="The engine metric name, e.g. cpu_usage.")
    promql: str = Field(min_length=1, max_length=4000)
    resource_label: str | None = Field(default=None, max_length=200, description=(
        "The label naming the service; default: the connector's resource_labels, first one present."))
    step_s: float | None = Field(default=None, ge=1, le=86400)


# A small default set for OpenTelemetry SDK metrics (HTTP server semantic conventions, stable since
# semconv 1.23: histogram http.server.request.duration in seconds, exported to Prometheus as
# http_server_request_duration_seconds with job = service.namespace/service.name) and for cAdvisor
# container metrics as scraped by the kubelet (label ``container``). Names match the engine's roles.
DEFAULT_QUERIES: list[PromQuery] = [
    PromQuery(name="cpu_usage_cores", resource_label="container", promql=(
        'sum by (container) (rate(container_cpu_usage_seconds_total{container!="",container!="POD"}'
        '[$__rate_interval]))')),
    PromQuery(name="memory_working_set_bytes", resource_label="container", promql=(
        'sum by (container) (container_memory_working_set_bytes{container!="",container!="POD"})')),
    PromQuery(name="server_latency_p95_seconds", resource_label="job", promql=(
        "histogram_quantile(0.95, sum by (job, le) "
        "(rate(http_server_request_duration_seconds_bucket[$__rate_interval])))")),
    PromQuery(name="server_error_ratio", resource_label="job", promql=(
        'sum by (job) (rate(http_server_request_duration_seconds_count{http_response_status_code=~"5.."}'
        "[$__rate_interval])) / sum by (job) (rate(http_server_request_duration_seconds_count"
        "[$__rate_interval]))")),
    PromQuery(name="request_rate", resource_label="job", promql=(
        "sum by (job) (rate(http_server_request_duration_seconds_count[$__rate_interval]))")),
]


class PrometheusConfig(HttpConfig):
    queries: list[PromQuery] = Field(default_factory=list, max_length=200, description=(
        "Named PromQL queries; empty means DEFAULT_QUERIES (OpenTelemetry HTTP + cAdvisor)."))
    resource_labels: list[str] = Field(
        default_factory=lambda: ["service", "service_name", "job", "container", "pod"], min_length=1,
        max_length=20, description="Labels tried in order to name a series' service when a query sets none.")
    step_s: float = Field(default=30.0, ge=1, le=86400, description="Default range-query step.")
    scrape_interval_s: float = Field(default=15.0, ge=1, le=3600, description="For $__rate_interval.")
    tenant: str | None = Field(default=None, max_length=200, description="Sent as X-Scope-OrgID (Mimir, Cortex).")
    alerts: bool = Field(default=True, description="Read firing alerts from /api/v1/alerts.")


def choose_step(start: float, end: float, wanted: float) -> float:
    """The wanted step, widened so the query stays under Prometheus' 11,000 points per series."""
    span = max(end - start, 0.0)
    return float(max(wanted, math.ceil(span / (MAX_POINTS - 1)) if span else wanted))


def _dur(seconds: float) -> str:
    return f"{max(int(math.ceil(seconds)), 1)}s"


def expand(promql: str, step: float, span: float, scrape_interval: float) -> str:
    values = {"interval": _dur(step), "rate_interval": _dur(max(2 * step, 4 * scrape_interval)),
              "range": _dur(span)}
    return _DURATION.sub(lambda m: values[m.group(1)], promql)


def safe_url(url: str) -> str:
    """The url without any user:password part, for messages."""
    p = urlsplit(url)
    host = p.hostname or ""
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


ERROR_TYPES = frozenset({"bad_data", "execution", "timeout", "canceled", "internal", "unavailable", "not_found",
                         "not_acceptable"})     # the errorType values of the Prometheus HTTP API


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


class PrometheusConnector(Connector):
    kind: ClassVar[str] = "prometheus"
    Config: ClassVar[type[PrometheusConfig]] = PrometheusConfig
    roles: ClassVar[frozenset[str]] = frozenset({"metrics", "alerts"})
    config: PrometheusConfig

    def __init__(self, name: str, config: PrometheusConfig) -> None:
        super().__init__(name, config)
        self._client: httpx.Client | None = None
        self._where = safe_url(config.url)

    # -- HTTP ---------------------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        if self._client is None:
            headers = {"Accept": "application/json", "User-Agent": "vigil"}
            if self.config.token is not None:
                headers["Authorization"] = f"Bearer {self.config.token.value()}"
            if self.config.tenant:
                headers["X-Scope-OrgID"] = self.config.tenant
            self._client = http_client(allow_link_local=self.config.allow_link_local, verify=self.config.verify_tls,
                                       base_url=self.config.url, headers=headers,
                                       timeout=httpx.Timeout(self.config.timeout_s), follow_redirects=False)
        return self._client

    def _get(self, path: str, params: dict[str, Any] | None = None, what: str = "") -> Any:
        """GET a Prometheus API path; the ``data`` member of a success envelope, or ``SourceError``."""
        what = what or path
        try:
            with self._http().stream("GET", path, params=params) as r:
                status, raw = r.status_code, read_capped(r)
        except ResponseTooLarge as exc:
            raise SourceError(f"Prometheus at {self._where} answered {what} with more than {exc.limit} bytes") \
                from None
        except httpx.TimeoutException:
            raise SourceError(f"Prometheus at {self._where} did not answer {what} within "
                              f"{self.config.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            if why := unsafe_reason(exc):
                raise SourceError(f"cannot reach Prometheus at {self._where}: {why}") from None
            raise SourceError(f"cannot reach Prometheus at {self._where}: {_one_line(exc) or type(exc).__name__}") \
                from None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if status >= 300 or not isinstance(body, dict) or body.get("status") != "success":
            # what failed, never the answer's text: the URL may point at any service on the host's networks.
            # A Prometheus error envelope's errorType (bad_data, execution, timeout...) is one of a fixed set.
            kind = body.get("errorType") if isinstance(body, dict) else None
            detail = f" ({kind})" if kind in ERROR_TYPES else ""
            if status in (401, 403):
                detail = " (not authorized: check the token)"
            elif status < 300:
                detail = " (not a Prometheus API answer)"
            raise SourceError(f"Prometheus at {self._where} refused {what}: HTTP {status}{detail}")
        return body.get("data")

    # -- queries ------------------------------------------------------------------------------------
    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Raw ``matrix`` result of /api/v1/query_range (step widened to respect the points limit)."""
        step = choose_step(start, end, step)
        start = math.ceil(start / step) * step        # aligned steps: the same window gives the same points
        if start > end:
            return []
        data = self._get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step:g}", "timeout": _dur(self.config.timeout_s)},
                         what="a range query")
        return list(data.get("result") or []) if isinstance(data, dict) else []

    def instant(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """An instant query: per series, its labels and (ts, value) samples (several for a range vector
        such as ``up[5m]``, which returns the raw stored samples)."""
        params = {"query": promql, "timeout": _dur(self.config.timeout_s)}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params, what="an instant query") or {}
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "scalar":
            return [({}, [_point(result)])]
        out = []
        for s in result:
            pts = [_point(v) for v in s.get("values") or []] if kind == "matrix" else [_point(s.get("value"))]
            out.append((dict(s.get("metric") or {}), [p for p in pts if p is not None]))
        return out

    def _resource(self, labels: dict[str, str], q: PromQuery) -> str | None:
        for key in ([q.resource_label] if q.resource_label else self.config.resource_labels):
            v = labels.get(key)
            if v:
                if key == "job":            # OpenTelemetry: job = service.namespace/service.name
                    v = v.rsplit("/", 1)[-1]
                elif key == "pod":
                    v = service_of_pod(v)
                return v
        return None

    def _one(self, q: PromQuery, start: float, end: float) -> pd.DataFrame:
        step = choose_step(start, end, q.step_s or self.config.step_s)
        promql = expand(q.promql, step, end - start, self.config.scrape_interval_s)
        rows: list[pd.DataFrame] = []
        for series in self.query_range(promql, start, end, step):
            res = self._resource(series.get("metric") or {}, q)
            if res is None:
                log.debug("prometheus %s: a series of %s has no resource label", self.name, q.name)
                continue
            pts = [p for p in (_point(v) for v in series.get("values") or []) if p is not None]
            if pts:
                ts, vals = zip(*pts, strict=True)
                rows.append(pd.DataFrame({"resource": res, "name": q.name, "ts": ts, "value": vals}))
        if not rows:
            return empty("metrics")
        df = pd.concat(rows, ignore_index=True)
        # several series of one service (pods, instances): their mean, one row per (resource, ts)
        return df.groupby(["resource", "name", "ts"], as_index=False, sort=True)["value"].mean()

    # -- roles --------------------------------------------------------------------------------------
    @property
    def queries(self) -> list[PromQuery]:
        return self.config.queries or DEFAULT_QUERIES

    def metrics(self, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        qs = [q for q in self.queries if names is None or q.name in names]
        if not qs or end <= start:
            return empty("metrics")
        with ThreadPoolExecutor(max_workers=min(4, len(qs)), thread_name_prefix="vigil-prom") as pool:
            futures = [(q, pool.submit(self._one, q, start, end)) for q in qs]
            frames, failed = [], []
            for q, fut in futures:
                try:
                    frames.append(fut.result())
                except SourceError as exc:
                    failed.append((q.name, str(exc)))
        if failed and len(failed) == len(qs):
            msgs = {m for _, m in failed}
            if len(msgs) == 1 and len(failed) > 1:        # the backend itself failed (down, slow, refused)
                raise SourceError(failed[0][1])
            more = f" (and {len(failed) - 1} more queries failed)" if len(failed) > 1 else ""
            raise SourceError(f"query {failed[0][0]!r}: {failed[0][1]}{more}")
        problems = [f"query {n!r}: {m}" for n, m in failed]
        for p in problems:
            log.warning("prometheus source %s: %s", self.name, p)
        nonempty = [f for f in frames if len(f)]
        df = pd.concat(nonempty, ignore_index=True) if nonempty else empty("metrics")
        if resources is not None:
            df = df[df["resource"].isin(resources)].reset_index(drop=True)
        df.attrs["problems"] = problems
        return df

    def alerts(self) -> list[Alert]:
        """Alerts the Prometheus rules engine has firing now (pending ones are not alerts yet)."""
        if not self.config.alerts:
            return []
        data = self._get("/api/v1/alerts", what="the alerts") or {}
        out = []
        for a in data.get("alerts") or []:
            if a.get("state") != "firing":
                continue
            labels = {str(k): str(v)[:1000] for k, v in (a.get("labels") or {}).items()}
            ann = a.get("annotations") or {}
            try:
                at = parse_time(a.get("activeAt"), "activeAt")
            except WebhookRejected:
                at = None
            if at is None:
                continue
            fp = labels_fingerprint("prometheus", labels)
            title = str(ann.get("summary") or ann.get("description") or labels.get("alertname") or "alert")
            out.append(Alert(id=fp, title=_one_line(title, 500), at=at, resource=resource_of(labels),
                             labels=labels, fingerprint=fp))
        return sorted(out, key=lambda x: x.at)

    def check(self) -> str:
        try:
            info = self._get("/api/v1/status/buildinfo", what="the build info") or {}
            what = f"Prometheus {info.get('version') or '(unknown version)'}"
        except SourceError as exc:
            if "HTTP 404" not in str(exc):
                raise
            self.instant("vector(1)")           # Thanos/others without buildinfo: does PromQL answer?
            what = "a Prometheus-compatible API"
        try:
            tsdb = self._get("/api/v1/status/tsdb", what="the TSDB status") or {}
            series = f"{int(tsdb.get('headStats', {}).get('numSeries', 0))} series in the head block"
        except (SourceError, TypeError, ValueError, AttributeError):
            series = "series count not available"
        return f"{what} at {self._where} answered; {series}; {len(self.queries)} queries configured"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _point(v: Any) -> tuple[float, float] | None:
    """A ``[ts, "value"]`` pair, or None for NaN/Inf (Prometheus' stale markers and empty ratios)."""
    try:
        ts, val = float(v[0]), float(v[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (ts, val) if math.isfinite(val) else None
