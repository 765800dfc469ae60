"""Jaeger as a span source and a call-graph source, through the query service's HTTP JSON API (the one
the Jaeger UI uses; served by Jaeger 1.x query and by Jaeger 2.x).

- services: ``GET /api/services`` -> ``{"data": [names]}`` (or the configured ``services``);
- spans: per service ``GET /api/traces?service=&start=&end=&limit=`` (times in microseconds), traces
  deduplicated across services. A span's parent is its ``CHILD_OF`` reference (else its first
  reference), its resource the ``serviceName`` of its process, ``startTime`` and ``duration`` are µs,
  and it is an error when tagged ``error=true`` or ``otel.status_code=ERROR``. Ids are zero-padded
  (Jaeger drops the high half of 64-bit trace ids) so they join with log lines' ids.
- topology: ``GET /api/dependencies?endTs=&lookback=`` (milliseconds) -> ``{"data": [{"parent",
  "child", "callCount"}]}``; when that is empty (storage backends without the dependencies job), the
  call edges of the last ``topology_lookback_s`` seconds of spans.

Bounds: ``traces_per_service`` per service, ``max_services`` services, and the whole query stops at
``timeout_s`` (services still unanswered are left out and logged)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field

from vigil.frames import call_edges
from vigil.model import Edge, EdgeKind, EdgeSource, Resource, Topology
from vigil.sources.base import FRAME_COLUMNS
from vigil.sources.connector import Connector, HttpConfig, SourceError, empty
from vigil.sources.httpjson import JsonHttp, not_an_answer

log = logging.getLogger(__name__)


class JaegerConfig(HttpConfig):
    services: list[str] = Field(default_factory=list, description="Query these services (default: all).")
    traces_per_service: int = Field(default=100, ge=1, le=5000)
    max_services: int = Field(default=50, ge=1, le=1000)
    fetch_workers: int = Field(default=4, ge=1, le=32)
    topology_lookback_s: float = Field(default=3600, gt=0, le=30 * 86400)


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


def _id(v: Any, width: int) -> str:
    s = str(v or "").lower()
    return s.zfill(width) if s else ""


def trace_rows(trace: dict) -> list[tuple]:
    """One Jaeger trace (``data[i]``) as spans-frame rows."""
    procs = trace.get("processes") or {}
    rows = []
    for sp in trace.get("spans") or []:
        refs = sp.get("references") or []
        parent = next((r for r in refs if r.get("refType") == "CHILD_OF"), refs[0] if refs else None)
        tags = {t.get("key"): t.get("value") for t in sp.get("tags") or [] if isinstance(t, dict)}
        err = _truthy(tags.get("error")) or str(tags.get("otel.status_code", "")).upper() == "ERROR"
        proc = sp.get("process") or procs.get(sp.get("processID"), {})
        try:
            start, dur = float(sp["startTime"]) / 1e6, float(sp.get("duration", 0)) / 1e3
        except (KeyError, TypeError, ValueError):
            continue
        rows.append((_id(sp.get("traceID"), 32), _id(sp.get("spanID"), 16),
                     _id(parent.get("spanID"), 16) if parent else "",
                     str(proc.get("serviceName") or "unknown_service")[:300], str(sp.get("operationName", ""))[:300],
                     start, dur, err))
    return rows


class JaegerConnector(Connector):
    kind: ClassVar[str] = "jaeger"
    Config: ClassVar[type[JaegerConfig]] = JaegerConfig
    roles: ClassVar[frozenset[str]] = frozenset({"spans", "topology"})

    def __init__(self, name: str, config: JaegerConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        self.http = JsonHttp(config, "Jaeger")
        self._pool = ThreadPoolExecutor(max_workers=config.fetch_workers, thread_name_prefix=f"jaeger-{name}")

    def _data(self, path: str, params: dict | None = None) -> list:
        body = self.http.get_json(path, params)
        if not isinstance(body, dict) or not isinstance(body.get("data") or [], list):
            raise SourceError(not_an_answer("Jaeger", self.http.host, path))
        if body.get("errors"):
            errs = body["errors"] if isinstance(body["errors"], list) else [body["errors"]]
            codes = sorted({str(e.get("code")) for e in errs if isinstance(e, dict) and isinstance(e.get("code"), int)})
            raise SourceError(f"Jaeger at {self.http.host} answered {path} with {len(errs)} error(s)"
                              + (f", code {', '.join(codes[:3])}" if codes else ""))
        return body.get("data") or []

    def service_names(self) -> list[str]:
        names = self.cfg.services or [str(s) for s in self._data("/api/services")]
        return sorted(names)[: self.cfg.max_services]

    def _traces(self, service: str, start: float, end: float) -> list:
        return self._data("/api/traces", {"service": service, "start": str(int(start * 1e6)),
                                          "end": str(int(end * 1e6)), "limit": str(self.cfg.traces_per_service),
                                          "lookback": "custom"})

    def spans(self, start: float, end: float) -> pd.DataFrame:
        t0 = time.monotonic()
        services = self.service_names()
        futures = {self._pool.submit(self._traces, s, start, end): s for s in services}
        done, pending = wait(futures, timeout=max(0.1, self.timeout_s - (time.monotonic() - t0)))
        for f in pending:
            f.cancel()
        seen: set[str] = set()
        rows: list[tuple] = []
        errors = []
        for f in done:
            try:
                traces = f.result()
            except SourceError as exc:
                errors.append(exc)
                continue
            for tr in traces:
                tid = _id(tr.get("traceID"), 32) if isinstance(tr, dict) else ""
                if tid and tid not in seen:
                    seen.add(tid)
                    rows.extend(trace_rows(tr))
        if pending or errors:
            log.warning("jaeger %s: %d of %d services answered (%d timed out, %d failed)", self.name,
                        len(done) - len(errors), len(services), len(pending), len(errors))
        if services and len(errors) == len(services):
            raise errors[0]
        if services and not done:
            raise SourceError(f"Jaeger at {self.http.host} answered no trace query within {self.timeout_s:g} s")
        if not rows:
            return empty("spans")
        df = pd.DataFrame(rows, columns=FRAME_COLUMNS["spans"])
        return df.drop_duplicates(["trace_id", "span_id"]).reset_index(drop=True)

    def topology(self) -> Topology:
        now = time.time()
        lookback_ms = int(self.cfg.topology_lookback_s * 1000)
        deps = self._data("/api/dependencies", {"endTs": str(int(now * 1000)), "lookback": str(lookback_ms)})
        edges = [Edge(src=str(d["parent"]), dst=str(d["child"]), kind=EdgeKind.CALLS, source=EdgeSource.TRACES,
                      weight=float(d.get("callCount") or 1))
                 for d in deps if isinstance(d, dict) and d.get("parent") and d.get("child")
                 and d["parent"] != d["child"]]
        names = set(self.service_names())
        if not edges:
            sp = self.spans(now - self.cfg.topology_lookback_s, now)
            edges = call_edges(sp)
            names |= set(sp.resource)
        names |= {e.src for e in edges} | {e.dst for e in edges}
        return Topology(resources=[Resource(name=n, kind="service") for n in sorted(names)], edges=edges)

    def check(self) -> str:
        n = len(self._data("/api/services"))
        return f"Jaeger at {self.http.host} answered: {n} services"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()
