"""Grafana Loki as a log source (and, optionally, a metric source through LogQL metric queries).

Logs come from ``GET /loki/api/v1/query_range`` with ``direction=forward``: a configured stream selector
(``{service_name=~".+"}`` by default), narrowed to the asked resources with a regex matcher on the
service label and to ``contains`` with a line filter. Long windows are split into ``split_s`` slices
(Loki refuses queries longer than its ``max_query_length``) and each slice is paged by the last
timestamp seen (Loki returns at most ``limit`` entries per call); entries on the page boundary that
were already returned are skipped. Everything stops at ``max_rows``.

A row's resource is the first of ``service_label``, ``app``, ``job`` its stream has; its level is the
``level`` or ``detected_level`` label (Loki 3 adds the latter itself) or else the level word the line
states; trace and span ids come from ``trace_id``/``span_id`` labels (structured metadata) or from a
``trace_id=...``/``TraceID: ...`` in the line."""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vigil.frames import level_of
from vigil.model import Resource, Topology
from vigil.sources.base import FRAME_COLUMNS
from vigil.sources.connector import Connector, HttpConfig, SourceError, empty
from vigil.sources.httpjson import JsonHttp, not_an_answer

log = logging.getLogger(__name__)
NS = 1_000_000_000
MAX_BODY_CHARS = 8192
LOKI_MAX_LIMIT = 5000       # Loki's default max_entries_limit_per_query
_LEVEL_WORDS = {"warning": "WARN", "warn": "WARN", "err": "ERROR", "error": "ERROR", "fatal": "ERROR",
                "critical": "ERROR", "crit": "ERROR", "panic": "ERROR", "emerg": "ERROR", "alert": "ERROR",
                "info": "INFO", "informational": "INFO", "notice": "INFO", "debug": "DEBUG", "trace": "TRACE"}
_TRACE_RE = re.compile(r"trace[_-]?id[\"']?\s*[=:]\s*[\"']?([0-9a-fA-F]{16,32})\b", re.I)
_SPAN_RE = re.compile(r"span[_-]?id[\"']?\s*[=:]\s*[\"']?([0-9a-fA-F]{16})\b", re.I)
_SELECTOR = re.compile(r"^\s*\{.*\}\s*$", re.S)


class MetricQuery(BaseModel):
    """A LogQL metric query (it must return a matrix); each series becomes ``name`` on the resource
    named by the series' service label (``resource_label``), e.g. an error-line rate per service."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1, max_length=4000)


class LokiConfig(HttpConfig):
    selector: str = Field(default='{service_name=~".+"}', max_length=2000,
                          description="LogQL stream selector every log query starts from.")
    pipeline: str = Field(default="", max_length=2000, description="Appended LogQL pipeline, e.g. '| json'.")
    service_label: str = Field(default="service_name", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    fallback_labels: list[str] = Field(default_factory=lambda: ["app", "job"])
    tenant: str | None = Field(default=None, max_length=200, description="X-Scope-OrgID (multi-tenant Loki).")
    username: str | None = Field(default=None, max_length=200,
                                 description="Basic-auth user (e.g. Grafana Cloud); the token is the password.")
    page_limit: int = Field(default=1000, ge=1, le=5000, description="Entries per query_range call.")
    max_rows: int = Field(default=20000, ge=1, le=1_000_000)
    split_s: float = Field(default=6 * 3600, gt=0, description="Longest window one query covers.")
    metric_queries: list[MetricQuery] = Field(default_factory=list)
    step_s: float = Field(default=60, gt=0, le=3600, description="Step of the metric queries.")

    @field_validator("selector")
    @classmethod
    def _braces(cls, v: str) -> str:
        if not _SELECTOR.match(v):
            raise ValueError("the selector must be a LogQL stream selector like {service_name=~\".+\"}")
        return v.strip()


def _logql_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normal_level(v: str) -> str:
    """A level word as the frames spell it (ERROR, WARN, INFO, DEBUG, TRACE), or "" when unknown."""
    v = v.strip().lower()
    return _LEVEL_WORDS.get(v, "")


class LokiConnector(Connector):
    kind: ClassVar[str] = "loki"
    Config: ClassVar[type[LokiConfig]] = LokiConfig
    roles: ClassVar[frozenset[str]] = frozenset({"logs", "topology"})

    def __init__(self, name: str, config: LokiConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        if config.metric_queries:
            self.roles = frozenset({"logs", "topology", "metrics"})   # type: ignore[misc]
        headers = {"X-Scope-OrgID": config.tenant} if config.tenant else {}
        self.http = JsonHttp(config, "Loki", headers=headers, username=config.username)

    # -- queries ----------------------------------------------------------------------------------
    def _query(self, resources: list[str] | None, contains: str | None) -> str:
        sel = self.cfg.selector
        if resources:
            alts = "|".join(re.escape(r) for r in resources)
            matcher = f"{self.cfg.service_label}=~{_logql_string(alts)}"
            inner = sel.strip()[1:-1].strip()
            sel = "{" + (f"{inner}, {matcher}" if inner else matcher) + "}"
        q = sel
        if contains:
            q += f" |= {_logql_string(contains)}"
        if self.cfg.pipeline:
            q += " " + self.cfg.pipeline.strip()
        return q

    def _range(self, query: str, start_ns: int, end_ns: int, limit: int, step: float | None = None) -> dict:
        params: dict[str, Any] = {"query": query, "start": str(start_ns), "end": str(end_ns),
                                  "limit": str(limit), "direction": "forward"}
        if step is not None:
            params["step"] = f"{step:g}"
        body = self.http.get_json("/loki/api/v1/query_range", params)
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise SourceError(not_an_answer("Loki", self.http.host, "/loki/api/v1/query_range"))
        return body["data"]

    def _resource(self, labels: dict[str, str]) -> str:
        for key in (self.cfg.service_label, *self.cfg.fallback_labels):
            if labels.get(key):
                return str(labels[key])[:300]
        return "unknown_service"

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        query = self._query(resources, contains)
        cap = min(self.cfg.max_rows, limit) if limit else self.cfg.max_rows
        rows: list[tuple] = []
        end_ns = int(end * NS)
        slice_start = int(start * NS)
        split = int(self.cfg.split_s * NS)
        while slice_start < end_ns and len(rows) < cap:
            slice_end = min(slice_start + split, end_ns)
            self._page_slice(query, slice_start, slice_end, cap, rows)
            slice_start = slice_end
        rows.sort(key=lambda r: r[1])
        if not rows:
            return empty("logs")
        return pd.DataFrame(rows[:cap], columns=FRAME_COLUMNS["logs"])

    def _page_slice(self, query: str, start_ns: int, end_ns: int, cap: int, rows: list[tuple]) -> None:
        """Page forward through [start_ns, end_ns) by the last timestamp returned."""
        seen_at_boundary: set[tuple] = set()
        cursor = start_ns
        while len(rows) < cap:
            # ask for the boundary entries again plus a page: Loki starts the next page at `cursor`
            want = min(self.cfg.page_limit + len(seen_at_boundary), LOKI_MAX_LIMIT)
            data = self._range(query, cursor, end_ns, want)
            if data.get("resultType") != "streams":
                raise SourceError(f"Loki answered a log query with {data.get('resultType')!r}, not streams "
                                  "(is the selector a metric query?)")
            entries = []
            for stream in data.get("result") or []:
                labels = stream.get("stream") or {}
                for v in stream.get("values") or []:
                    entries.append((int(v[0]), v[1], labels, v[2] if len(v) > 2 else None))
            if not entries:
                return
            entries.sort(key=lambda e: e[0])
            last = entries[-1][0]
            new_boundary: set[tuple] = set()
            added = 0
            for ts_ns, line, labels, meta in entries:
                key = (ts_ns, line, tuple(sorted(labels.items())))
                if ts_ns == cursor and key in seen_at_boundary:
                    continue
                if ts_ns == last:
                    new_boundary.add(key)
                rows.append(self._row(ts_ns, line, labels, meta))
                added += 1
                if len(rows) >= cap:
                    return
            if len(entries) < want or added == 0:
                return       # the slice is exhausted (or only repeats the boundary)
            if last != cursor:
                seen_at_boundary = new_boundary
            else:
                seen_at_boundary |= new_boundary
            cursor = last

    def _row(self, ts_ns: int, line: str, labels: dict[str, str], meta: dict | None) -> tuple:
        extra: dict[str, str] = {}
        if isinstance(meta, dict):       # categorize-labels encoding: structured metadata and parsed labels
            for part in ("structuredMetadata", "parsed"):
                if isinstance(meta.get(part), dict):
                    extra.update(meta[part])
        labels = {**extra, **labels}
        level = ""
        for key in ("level", "detected_level", "severity", "severity_text"):
            if labels.get(key):
                level = normal_level(str(labels[key]))
                if level:
                    break
        text = str(line)
        if not level:
            level = level_of(text)
        tid = labels.get("trace_id") or labels.get("traceID") or labels.get("traceid") or ""
        sid = labels.get("span_id") or labels.get("spanID") or labels.get("spanid") or ""
        if not tid and (m := _TRACE_RE.search(text[:2000])):
            tid = m.group(1)
        if not sid and (m := _SPAN_RE.search(text[:2000])):
            sid = m.group(1)
        return (self._resource(labels), ts_ns / NS, level, text[:MAX_BODY_CHARS], str(tid).lower(),
                str(sid).lower())

    # -- metrics (LogQL metric queries) -----------------------------------------------------------
    def metrics(self, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        out: list[tuple] = []
        for mq in self.cfg.metric_queries:
            if names and mq.name not in names:
                continue
            data = self._range(mq.query, int(start * NS), int(end * NS), self.cfg.page_limit, self.cfg.step_s)
            if data.get("resultType") != "matrix":
                raise SourceError(f"Loki metric query {mq.name!r} returned {data.get('resultType')!r}, not a matrix")
            for series in data.get("result") or []:
                res = self._resource(series.get("metric") or {})
                if resources and res not in resources:
                    continue
                for t, val in series.get("values") or []:
                    try:
                        out.append((res, mq.name, float(t), float(val)))
                    except (TypeError, ValueError):
                        continue
        if not out:
            return empty("metrics")
        return pd.DataFrame(out, columns=FRAME_COLUMNS["metrics"])

    # -- topology and health ----------------------------------------------------------------------
    def topology(self) -> Topology:
        """The services Loki knows (values of the service label); Loki has no call edges."""
        body = self.http.get_json(f"/loki/api/v1/label/{self.cfg.service_label}/values")
        names = body.get("data") if isinstance(body, dict) else None
        return Topology(resources=[Resource(name=str(n)[:300], kind="service") for n in (names or [])[:5000]])

    def check(self) -> str:
        body = self.http.get_json("/loki/api/v1/labels")
        labels = body.get("data") if isinstance(body, dict) else None
        if not isinstance(labels, list):
            raise SourceError("Loki answered /loki/api/v1/labels with an unexpected body")
        has = "has" if self.cfg.service_label in labels else "does not have"
        return f"Loki at {self.http.host} answered: {len(labels)} labels ({has} {self.cfg.service_label!r})"

    def close(self) -> None:
        self.http.close()
