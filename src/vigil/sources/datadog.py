"""Datadog as a log, metric and span source, through the official ``datadog-api-client``.

- logs: v2 ``POST /api/v2/logs/events/search`` (``LogsApi.list_logs``), query ``service:(a OR b)`` plus
  the configured ``logs_query`` and ``contains``, sorted by timestamp ascending, paged by cursor
  (``meta.page.after``) until ``max_rows``. Level is the log's ``status``.
- metrics: v1 ``GET /api/v1/query`` (``MetricsApi.query_metrics``) for each configured ``metric_queries``
  entry (a Datadog metric query, grouped ``by {service}``); the resource is the series' ``service:`` tag
  (``service_tag``), the points are ``[ms, value]``.
- spans: v2 ``POST /api/v2/spans/events/search`` (``SpansApi.list_spans``), paged by cursor until
  ``max_spans``. Datadog ids are decimal 64-bit; they are written as hex (a 128-bit trace id's high half
  comes from the ``_dd.p.tid`` tag) so they join with OpenTelemetry ids.

The site (``datadoghq.com``, ``datadoghq.eu``, ``us5.datadoghq.com``, ...) picks ``https://api.<site>``;
``url`` overrides it and is checked like every outbound URL. The API and application keys are
SecretRefs; no retry (a slow Datadog is a timeout, not four)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vigil.sources.base import FRAME_COLUMNS
from vigil.sources.connector import Connector, ConnectorConfig, SecretRef, SourceError, empty
from vigil.sources.httpjson import http_failure, one_line, transport_failure
from vigil.sources.loki import MAX_BODY_CHARS, normal_level
from vigil.sources.safety import check_url, unsafe_reason, vet_urllib3

log = logging.getLogger(__name__)


class DatadogMetricQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="Metric name in Vigil's frames, e.g. cpu.")
    query: str = Field(min_length=1, max_length=4000, description="e.g. avg:container.cpu.usage{*} by {service}")


class DatadogConfig(ConnectorConfig):
    site: str = Field(default="datadoghq.com", pattern=r"^[a-z0-9.-]{3,100}$")
    url: str | None = Field(default=None, max_length=2000, description="API base URL; overrides site.")
    allow_link_local: bool = False
    verify_tls: bool = True
    api_key: SecretRef
    app_key: SecretRef
    logs_query: str = Field(default="", max_length=2000, description="Extra log search terms, e.g. env:prod.")
    spans_query: str = Field(default="*", max_length=2000)
    logs_indexes: list[str] = Field(default_factory=lambda: ["*"])
    service_tag: str = Field(default="service", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,100}$")
    metric_queries: list[DatadogMetricQuery] = Field(default_factory=list)
    page_size: int = Field(default=1000, ge=1, le=5000)
    max_rows: int = Field(default=10000, ge=1, le=500_000)
    max_spans: int = Field(default=10000, ge=1, le=500_000)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("the url must start with http:// or https://")
        return v.rstrip("/") if v else v

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.base_url, allow_link_local=self.allow_link_local)

    @property
    def base_url(self) -> str:
        return self.url or f"https://api.{self.site}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(v: Any) -> float | None:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def hex_id(v: Any, width: int, high: Any = None) -> str:
    """A Datadog id (decimal, or already hex) as zero-padded lowercase hex."""
    s = str(v or "").strip().lower()
    if not s:
        return ""
    if s.isdigit():
        s = format(int(s), "x")
    if high and width == 32:
        return (str(high).lower().zfill(16) + s.zfill(16))[-32:]
    return s.zfill(width)


def _quote(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DatadogConnector(Connector):
    kind: ClassVar[str] = "datadog"
    Config: ClassVar[type[DatadogConfig]] = DatadogConfig
    roles: ClassVar[frozenset[str]] = frozenset({"logs", "metrics", "spans"})

    def __init__(self, name: str, config: DatadogConfig) -> None:
        super().__init__(name, config)
        import urllib3
        from datadog_api_client import ApiClient, Configuration
        self.cfg = config
        conf = Configuration(host=config.base_url, request_timeout=config.timeout_s, enable_retry=False,
                             retry_policy=urllib3.Retry(total=0, redirect=0, raise_on_status=False))
        conf.api_key["apiKeyAuth"] = config.api_key.value()
        conf.api_key["appKeyAuth"] = config.app_key.value()
        conf.verify_ssl = config.verify_tls
        self.host = config.base_url.split("//", 1)[1]
        self.client = ApiClient(conf)
        vet_urllib3(self.client.rest_client.pool_manager, allow_link_local=config.allow_link_local)

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        import urllib3
        from datadog_api_client.exceptions import ApiException, OpenApiException
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise SourceError(http_failure("Datadog", self.host, int(exc.status or 0), what)) from None
        except urllib3.exceptions.MaxRetryError as exc:
            cause = exc.reason
            if why := unsafe_reason(exc):
                raise SourceError(f"cannot reach Datadog at {self.host}: {why}") from None
            # NewConnectionError subclasses ConnectTimeoutError in urllib3: a refused connection is no timeout
            if isinstance(cause, urllib3.exceptions.TimeoutError) and \
                    not isinstance(cause, urllib3.exceptions.NewConnectionError):
                raise SourceError(f"Datadog at {self.host} did not answer {what} within {self.timeout_s:g} s") \
                    from None
            raise SourceError(f"cannot reach Datadog at {self.host}: {type(cause).__name__}") from None
        except urllib3.exceptions.TimeoutError:
            raise SourceError(f"Datadog at {self.host} did not answer {what} within {self.timeout_s:g} s") from None
        except urllib3.exceptions.HTTPError as exc:
            raise SourceError(transport_failure("Datadog", self.host, exc)) from None
        except (OpenApiException, ValueError, TypeError) as exc:
            raise SourceError(f"Datadog at {self.host} answered {what} with something that is not a Datadog API "
                              f"answer ({type(exc).__name__})") from None

    # -- logs -------------------------------------------------------------------------------------
    def _log_query(self, resources: list[str] | None, contains: str | None) -> str:
        parts = [self.cfg.logs_query] if self.cfg.logs_query else []
        if resources:
            parts.append(f"{self.cfg.service_tag}:(" + " OR ".join(_quote(r) for r in resources) + ")")
        if contains:
            parts.append(_quote(contains))
        return " ".join(parts) or "*"

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        from datadog_api_client.v2.api.logs_api import LogsApi
        from datadog_api_client.v2.model.logs_list_request import LogsListRequest
        from datadog_api_client.v2.model.logs_list_request_page import LogsListRequestPage
        from datadog_api_client.v2.model.logs_query_filter import LogsQueryFilter
        from datadog_api_client.v2.model.logs_sort import LogsSort
        api = LogsApi(self.client)
        cap = min(self.cfg.max_rows, limit) if limit else self.cfg.max_rows
        query = self._log_query(resources, contains)
        rows: list[tuple] = []
        cursor = None
        while len(rows) < cap:
            page = LogsListRequestPage(limit=min(self.cfg.page_size, cap - len(rows)))
            if cursor:
                page.cursor = cursor
            body = LogsListRequest(filter=LogsQueryFilter(query=query, _from=_iso(start), to=_iso(end),
                                                          indexes=self.cfg.logs_indexes),
                                   page=page, sort=LogsSort.TIMESTAMP_ASCENDING)
            resp = self._call("logs search", api.list_logs, body=body)
            for item in resp.get("data") or []:
                a = item.get("attributes") or {}
                ts = _epoch(a.get("timestamp"))
                if ts is None:
                    continue
                inner = a.get("attributes") or {}
                dd = inner.get("dd") if isinstance(inner.get("dd"), dict) else {}
                msg = str(a.get("message") or "")
                rows.append((str(a.get("service") or "unknown_service")[:300], ts,
                             normal_level(str(a.get("status") or "")), msg[:MAX_BODY_CHARS],
                             hex_id(inner.get("trace_id") or dd.get("trace_id"), 32),
                             hex_id(inner.get("span_id") or dd.get("span_id"), 16)))
            meta = resp.get("meta") or {}
            cursor = (meta.get("page") or {}).get("after")
            if not cursor or not resp.get("data"):
                break
        if not rows:
            return empty("logs")
        return pd.DataFrame(rows[:cap], columns=FRAME_COLUMNS["logs"])

    # -- metrics ----------------------------------------------------------------------------------
    def metrics(self, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        from datadog_api_client.v1.api.metrics_api import MetricsApi
        api = MetricsApi(self.client)
        out: list[tuple] = []
        prefix = self.cfg.service_tag + ":"
        for mq in self.cfg.metric_queries:
            if names and mq.name not in names:
                continue
            resp = self._call("metrics query", api.query_metrics, _from=int(start), to=int(end) + 1, query=mq.query)
            if resp.get("status") == "error":
                raise SourceError(f"Datadog metric query {mq.name!r} failed: {one_line(str(resp.get('error')), 160)}")
            for s in resp.get("series") or []:
                tags = list(s.get("tag_set") or []) + str(s.get("scope") or "").split(",")
                res = next((t[len(prefix):] for t in tags if t.startswith(prefix)), "") or "unknown_service"
                if resources and res not in resources:
                    continue
                for point in s.get("pointlist") or []:
                    p = getattr(point, "value", point)      # the client wraps [ms, value] in a Point
                    if len(p) >= 2 and p[0] is not None and p[1] is not None:
                        out.append((res[:300], mq.name, float(p[0]) / 1000.0, float(p[1])))
        if not out:
            return empty("metrics")
        return pd.DataFrame(out, columns=FRAME_COLUMNS["metrics"])

    # -- spans ------------------------------------------------------------------------------------
    def spans(self, start: float, end: float) -> pd.DataFrame:
        from datadog_api_client.v2.api.spans_api import SpansApi
        from datadog_api_client.v2.model.spans_list_request import SpansListRequest
        from datadog_api_client.v2.model.spans_list_request_attributes import SpansListRequestAttributes
        from datadog_api_client.v2.model.spans_list_request_data import SpansListRequestData
        from datadog_api_client.v2.model.spans_list_request_page import SpansListRequestPage
        from datadog_api_client.v2.model.spans_list_request_type import SpansListRequestType
        from datadog_api_client.v2.model.spans_query_filter import SpansQueryFilter
        from datadog_api_client.v2.model.spans_sort import SpansSort
        api = SpansApi(self.client)
        rows: list[tuple] = []
        cursor = None
        while len(rows) < self.cfg.max_spans:
            page = SpansListRequestPage(limit=min(self.cfg.page_size, self.cfg.max_spans - len(rows)))
            if cursor:
                page.cursor = cursor
            body = SpansListRequest(data=SpansListRequestData(
                attributes=SpansListRequestAttributes(
                    filter=SpansQueryFilter(_from=_iso(start), to=_iso(end), query=self.cfg.spans_query),
                    page=page, sort=SpansSort.TIMESTAMP_ASCENDING),
                type=SpansListRequestType.SEARCH_REQUEST))
            resp = self._call("spans search", api.list_spans, body=body)
            for item in resp.get("data") or []:
                row = self._span_row(item.get("attributes") or {})
                if row is not None:
                    rows.append(row)
            cursor = ((resp.get("meta") or {}).get("page") or {}).get("after")
            if not cursor or not resp.get("data"):
                break
        if not rows:
            return empty("spans")
        return pd.DataFrame(rows, columns=FRAME_COLUMNS["spans"]).drop_duplicates(["trace_id", "span_id"])

    @staticmethod
    def _span_row(a: dict) -> tuple | None:
        t0, t1 = _epoch(a.get("start_timestamp")), _epoch(a.get("end_timestamp"))
        if t0 is None:
            return None
        attrs = a.get("attributes") or {}
        custom = a.get("custom") or {}
        tags = [str(t) for t in a.get("tags") or []]
        high = attrs.get("_dd.p.tid") or next((t.split(":", 1)[1] for t in tags if t.startswith("_dd.p.tid:")), None)
        dur_ms = (t1 - t0) * 1000.0 if t1 is not None else float(custom.get("duration") or 0) / 1e6
        err = (str(attrs.get("status") or custom.get("status") or "").lower() == "error"
               or bool(custom.get("error")) or "status:error" in tags or "error:true" in tags)
        parent = str(a.get("parent_id") or "")
        return (hex_id(a.get("trace_id"), 32, high), hex_id(a.get("span_id"), 16),
                "" if parent in ("", "0") else hex_id(parent, 16), str(a.get("service") or "unknown_service")[:300],
                str(a.get("resource_name") or custom.get("operation_name") or "")[:300], t0, dur_ms, err)

    def check(self) -> str:
        from datadog_api_client.v1.api.authentication_api import AuthenticationApi
        resp = self._call("key validation", AuthenticationApi(self.client).validate)
        if not resp.get("valid"):
            raise SourceError(f"Datadog at {self.host} says the API key is not valid")
        return f"Datadog at {self.host} answered: API key valid"

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:   # noqa: BLE001 - closing a pool must never fail a caller
            pass
