"""OpenSearch (and Elasticsearch-compatible clusters) as a log source, through opensearch-py.

One query per call: ``POST /<index>/_search`` with a ``bool.filter`` of a range on ``time_field``
(epoch milliseconds), a ``terms`` on ``service_field`` for the asked resources and a ``match_phrase`` on
``message_field`` for ``contains``; sorted by time then ``tiebreaker`` ascending and paged with
``search_after`` until ``max_rows``. Dotted field names are looked up both as flat keys and as nested
objects (``resource.service.name`` or ``{"resource": {"service": {"name": ...}}}``).

Elasticsearch: the ``_search`` request and response are the same in Elasticsearch 7.x and 8.x, but
opensearch-py is only tested against OpenSearch; an Elasticsearch 8 cluster with security needs a token
or basic auth like OpenSearch. ``_doc`` as tiebreaker is cheap but not unique across shards: rows with
the same timestamp on a page boundary can repeat or be missed (set ``tiebreaker`` to a unique keyword
field, e.g. ``log.id``, if that matters)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pandas as pd
from pydantic import Field

from vigil.frames import level_of
from vigil.sources.base import FRAME_COLUMNS
from vigil.sources.connector import Connector, HttpConfig, SecretRef, SourceError, empty
from vigil.sources.httpjson import error_code, http_failure
from vigil.sources.loki import MAX_BODY_CHARS, normal_level
from vigil.sources.safety import unsafe_reason, vet_urllib3

log = logging.getLogger(__name__)
_FIELD = r"^[A-Za-z_@][A-Za-z0-9_.@-]{0,200}$"


class OpenSearchConfig(HttpConfig):
    index: str = Field(default="logs-*", min_length=1, max_length=500, pattern=r"^[^\s/#?]+$",
                       description="Index name or pattern (comma-separated allowed).")
    time_field: str = Field(default="@timestamp", pattern=_FIELD)
    service_field: str = Field(default="service.name", pattern=_FIELD)
    level_field: str = Field(default="log.level", pattern=_FIELD)
    message_field: str = Field(default="message", pattern=_FIELD)
    trace_field: str = Field(default="trace.id", pattern=_FIELD)
    span_field: str = Field(default="span.id", pattern=_FIELD)
    tiebreaker: str = Field(default="_doc", pattern=_FIELD)
    username: str | None = Field(default=None, max_length=200, description="Basic auth user; `password` is its secret.")
    password: SecretRef | None = None
    page_size: int = Field(default=1000, ge=1, le=10000)
    max_rows: int = Field(default=20000, ge=1, le=1_000_000)


def field_of(src: dict, path: str) -> Any:
    """``a.b.c`` as a flat key, else walked through nested objects (also mixed: ``{"a": {"b.c": ..}}``)."""
    if path in src:
        return src[path]
    head, _, rest = path.partition(".")
    while rest:
        if isinstance(src.get(head), dict):
            found = field_of(src[head], rest)
            if found is not None:
                return found
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return None


def _epoch(v: Any) -> float | None:
    if isinstance(v, int | float):
        return float(v) / 1000.0
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                return float(v) / 1000.0
            except ValueError:
                return None
    return None


def _vetted_connection_class(config: OpenSearchConfig) -> type:
    """opensearch-py's urllib3 connection, its pool vetting every connection's address (safety.py). The
    pool is made in ``__init__`` and again after a close (``_create_urllib3_pool``): both are hooked."""
    from opensearchpy import Urllib3HttpConnection

    class Vetted(Urllib3HttpConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            vet_urllib3(self.pool, allow_link_local=config.allow_link_local)

        def _create_urllib3_pool(self) -> None:
            super()._create_urllib3_pool()
            vet_urllib3(self.pool, allow_link_local=config.allow_link_local)

    return Vetted


class OpenSearchConnector(Connector):
    kind: ClassVar[str] = "opensearch"
    Config: ClassVar[type[OpenSearchConfig]] = OpenSearchConfig
    roles: ClassVar[frozenset[str]] = frozenset({"logs"})

    def __init__(self, name: str, config: OpenSearchConfig) -> None:
        super().__init__(name, config)
        from opensearchpy import OpenSearch
        self.cfg = config
        self.host = urlsplit(config.url).netloc
        kwargs: dict[str, Any] = {}
        if config.username and config.password is not None:
            kwargs["http_auth"] = (config.username, config.password.value())
        elif config.token is not None:
            kwargs["headers"] = {"Authorization": f"Bearer {config.token.value()}"}
        self.client = OpenSearch(hosts=[config.url], timeout=config.timeout_s, max_retries=0,
                                 retry_on_timeout=False, verify_certs=config.verify_tls,
                                 ssl_show_warn=False, connection_class=_vetted_connection_class(config),
                                 **kwargs)

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        from opensearchpy import exceptions as ex
        try:
            return fn(*args, **kwargs)
        except ex.ConnectionTimeout:
            raise SourceError(f"OpenSearch at {self.host} did not answer {what} within {self.timeout_s:g} s") \
                from None
        except ex.ConnectionError as exc:
            if why := unsafe_reason(exc):
                raise SourceError(f"cannot reach OpenSearch at {self.host}: {why}") from None
            raise SourceError(f"cannot reach OpenSearch at {self.host}: {type(exc.info).__name__}") from None
        except ex.TransportError as exc:
            info = exc.info.get("error") if isinstance(exc.info, dict) else None
            code = error_code(info.get("type")) if isinstance(info, dict) else None
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            raise SourceError(http_failure("OpenSearch", self.host, status, what)
                              + (f": {code}" if code else "")) from None
        except ex.OpenSearchException as exc:
            raise SourceError(f"OpenSearch at {self.host} failed on {what} ({type(exc).__name__})") from None

    def _query(self, start: float, end: float, resources: list[str] | None, contains: str | None) -> dict:
        filters: list[dict] = [{"range": {self.cfg.time_field: {"gte": int(start * 1000), "lte": int(end * 1000),
                                                                "format": "epoch_millis"}}}]
        if resources:
            filters.append({"terms": {self.cfg.service_field: list(resources)}})
        if contains:
            filters.append({"match_phrase": {self.cfg.message_field: contains}})
        return {"bool": {"filter": filters}}

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        cap = min(self.cfg.max_rows, limit) if limit else self.cfg.max_rows
        body: dict[str, Any] = {"query": self._query(start, end, resources, contains),
                                "sort": [{self.cfg.time_field: {"order": "asc"}}, {self.cfg.tiebreaker: "asc"}],
                                "track_total_hits": False}
        rows: list[tuple] = []
        while len(rows) < cap:
            body["size"] = min(self.cfg.page_size, cap - len(rows))
            resp = self._call("_search", self.client.search, index=self.cfg.index, body=body)
            hits = (resp.get("hits") or {}).get("hits") if isinstance(resp, dict) else None
            if not isinstance(hits, list):
                raise SourceError(f"OpenSearch at {self.host} answered _search without hits")
            for h in hits:
                row = self._row(h)
                if row is not None:
                    rows.append(row)
            if len(hits) < body["size"] or not hits[-1].get("sort"):
                break
            body["search_after"] = hits[-1]["sort"]
        if not rows:
            return empty("logs")
        return pd.DataFrame(rows[:cap], columns=FRAME_COLUMNS["logs"])

    def _row(self, hit: dict) -> tuple | None:
        src = hit.get("_source") or {}
        sort = hit.get("sort") or []
        ts = _epoch(sort[0]) if sort and isinstance(sort[0], int | float) else _epoch(field_of(src, self.cfg.time_field))
        if ts is None:
            return None
        body = field_of(src, self.cfg.message_field)
        text = body if isinstance(body, str) else ("" if body is None else str(body))
        level = normal_level(str(field_of(src, self.cfg.level_field) or "")) or level_of(text)
        svc = field_of(src, self.cfg.service_field)
        return (str(svc)[:300] if svc else "unknown_service", ts, level, text[:MAX_BODY_CHARS],
                str(field_of(src, self.cfg.trace_field) or "").lower(),
                str(field_of(src, self.cfg.span_field) or "").lower())

    def check(self) -> str:
        info = self._call("cluster info", self.client.info)
        version = info.get("version", {}) if isinstance(info, dict) else {}
        dist = version.get("distribution", "elasticsearch")
        return (f"{dist} {version.get('number', '?')} cluster {info.get('cluster_name', '?')!r} at "
                f"{self.host} answered")

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:   # noqa: BLE001 - closing a pool must never fail a caller
            pass
