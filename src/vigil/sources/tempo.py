"""Grafana Tempo as a span source (and a call-graph source: edges between services from parent links).

Spans come in two steps because Tempo's search answers trace summaries, not parent links:
1. ``GET /api/search?q=<TraceQL>&start=<s>&end=<s>&limit=<max_traces>&spss=<n>`` lists the traces that
   started in the window (``{}`` by default; a configured TraceQL narrows it);
2. ``GET /api/traces/<traceID>`` fetches each trace as OTLP/JSON (``batches`` in Tempo 1.x/2.x,
   ``resourceSpans`` or ``trace.resourceSpans`` elsewhere; ids base64 as protobuf's JSON mapping writes
   them, or hex as OTLP/JSON does), decoded by the same code the OTLP receiver uses.

At most ``max_traces`` traces are fetched per query (default 500), ``fetch_workers`` at a time, and
fetching stops when ``timeout_s`` has passed since the query began, so one query never outlives the
router's bound; what was left out is logged. Whole traces are returned (a trace found in the window
keeps its spans that run past it). Topology is the call edges of the last
``topology_lookback_s`` seconds of spans."""

from __future__ import annotations

import base64
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

import pandas as pd
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from pydantic import Field

from vigil.frames import call_edges
from vigil.ingest.otlp import decode_spans
from vigil.model import Resource, Topology
from vigil.sources.connector import Connector, HttpConfig, SourceError, empty
from vigil.sources.httpjson import JsonHttp, not_an_answer, version_text

log = logging.getLogger(__name__)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_ID_KEYS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")


class TempoConfig(HttpConfig):
    traceql: str = Field(default="{}", min_length=2, max_length=4000, description="TraceQL search query.")
    max_traces: int = Field(default=500, ge=1, le=20000, description="Traces fetched per query, at most.")
    spss: int = Field(default=3, ge=1, le=1000, description="Spans per span set in search results.")
    fetch_workers: int = Field(default=8, ge=1, le=32)
    resource_attribute: str = Field(default="service.name", max_length=200)
    topology_lookback_s: float = Field(default=900, gt=0, le=7 * 86400)
    tenant: str | None = Field(default=None, max_length=200, description="X-Scope-OrgID (multi-tenant Tempo).")
    username: str | None = Field(default=None, max_length=200,
                                 description="Basic-auth user (e.g. Grafana Cloud); the token is the password.")


def _ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes ids as hex, protobuf's JSON mapping (Tempo's output) as base64: accept both.
    The lengths tell them apart (16-byte trace id: 32 hex or 24 base64 characters)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            for k, v in n.items():
                if k in _ID_KEYS and isinstance(v, str) and len(v) == 2 * _ID_KEYS[k] and _HEX.match(v):
                    n[k] = base64.b64encode(bytes.fromhex(v)).decode()
                elif isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(n, list):
            stack.extend(x for x in n if isinstance(x, dict | list))


def otlp_trace_frame(body: Any, resource_attribute: str = "service.name") -> pd.DataFrame:
    """A Tempo trace body (any of its JSON shapes) as a spans frame."""
    if isinstance(body, dict) and isinstance(body.get("trace"), dict):
        body = body["trace"]
    if not isinstance(body, dict):
        raise SourceError("Tempo answered a trace with something that is not a JSON object")
    rs = body.get("resourceSpans", body.get("batches", []))
    for r in rs if isinstance(rs, list) else []:
        if isinstance(r, dict) and "instrumentationLibrarySpans" in r and "scopeSpans" not in r:
            r["scopeSpans"] = r.pop("instrumentationLibrarySpans")     # Tempo 1.x / OTLP < 0.15
    obj = {"resourceSpans": rs}
    _ids_to_base64(obj)
    req = trace_service_pb2.ExportTraceServiceRequest()
    try:
        json_format.ParseDict(obj, req, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise SourceError(f"Tempo answered a trace that is not OTLP/JSON ({type(exc).__name__})") from None
    return decode_spans(req, resource_attribute).frame


class TempoConnector(Connector):
    kind: ClassVar[str] = "tempo"
    Config: ClassVar[type[TempoConfig]] = TempoConfig
    roles: ClassVar[frozenset[str]] = frozenset({"spans", "topology"})

    def __init__(self, name: str, config: TempoConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        headers = {"X-Scope-OrgID": config.tenant} if config.tenant else {}
        self.http = JsonHttp(config, "Tempo", headers=headers, username=config.username)
        self._pool = ThreadPoolExecutor(max_workers=config.fetch_workers, thread_name_prefix=f"tempo-{name}")

    def search(self, start: float, end: float) -> list[str]:
        """Trace ids that Tempo's search finds in [start, end], at most ``max_traces``."""
        body = self.http.get_json("/api/search", {
            "q": self.cfg.traceql, "start": str(int(start)), "end": str(int(end) + (end > int(end))),
            "limit": str(self.cfg.max_traces), "spss": str(self.cfg.spss)})
        traces = body.get("traces") if isinstance(body, dict) else None
        if not isinstance(traces, list):
            raise SourceError(not_an_answer("Tempo", self.http.host, "/api/search"))
        ids = []
        for t in traces:
            tid = str(t.get("traceID", "")) if isinstance(t, dict) else ""
            if _TRACE_ID.match(tid) and tid not in ids:
                ids.append(tid)
        return ids[: self.cfg.max_traces]

    def spans(self, start: float, end: float) -> pd.DataFrame:
        t0 = time.monotonic()
        ids = self.search(start, end)
        if not ids:
            return empty("spans")
        futures = {self._pool.submit(self.http.get_json, f"/api/traces/{tid}"): tid for tid in ids}
        left = max(0.1, self.timeout_s - (time.monotonic() - t0))
        done, pending = wait(futures, timeout=left)
        for f in pending:
            f.cancel()
        frames, failed, first_error = [], 0, None
        for f in done:
            try:
                frames.append(otlp_trace_frame(f.result(), self.cfg.resource_attribute))
            except SourceError as exc:
                failed += 1
                first_error = first_error or exc
        if pending or failed:
            log.warning("tempo %s: %d of %d traces fetched (%d timed out, %d failed)", self.name,
                        len(frames), len(ids), len(pending), failed)
        if not frames:
            if first_error is not None:
                raise first_error
            raise SourceError(f"Tempo at {self.http.host} returned none of {len(ids)} traces within "
                              f"{self.timeout_s:g} s")
        df = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
        return df.drop_duplicates(["trace_id", "span_id"]).reset_index(drop=True)

    def topology(self) -> Topology:
        now = time.time()
        sp = self.spans(now - self.cfg.topology_lookback_s, now)
        return Topology(resources=[Resource(name=r, kind="service") for r in sorted(set(sp.resource))],
                        edges=call_edges(sp))

    def check(self) -> str:
        try:
            info = self.http.get_json("/api/status/buildinfo")
            if not isinstance(info, dict) or not isinstance(info.get("version"), str):
                raise SourceError(not_an_answer("Tempo", self.http.host, "/api/status/buildinfo"))
            return f"Tempo {version_text(info['version'])} at {self.http.host} answered"
        except SourceError as exc:
            if "HTTP 404" not in str(exc):
                raise
        if self.http.get_text("/ready").strip().lower() != "ready":
            raise SourceError(not_an_answer("Tempo", self.http.host, "/ready"))
        return f"Tempo at {self.http.host} is ready"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()
