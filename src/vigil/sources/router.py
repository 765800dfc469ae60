"""``SpaceSources``: the one ``TelemetrySource`` the investigator and the interfaces query. It answers
from the embedded store plus every connector registered for the space, in parallel, each call bounded
by the connector's timeout. A connector that fails or is slow leaves its part out: the frame's
``attrs["problems"]`` says what was missing (the investigator journals it) and the investigation goes
on with partial evidence. ``attrs["rows_by_source"]`` says who answered what."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pandas as pd

from vigil.model import Alert, Edge, Topology
from vigil.sources.base import FRAME_COLUMNS, TelemetrySource, conform
from vigil.sources.connector import Connector, build
from vigil.sources.registry import scrub

log = logging.getLogger(__name__)
CACHE_S = 5.0


class SpaceSources:
    """Embedded store + registered connectors, per space. ``rows`` is a callable returning the space's
    stored source rows (``StateStore.list_sources``); rows of kind ``otlp`` configure the embedded store."""

    name = "sources"

    def __init__(self, embedded: TelemetrySource, rows, *, max_workers: int = 8) -> None:
        self.embedded = embedded
        self._rows = rows
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, tuple, list[Connector], list[str]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vigil-source")
        self.status: dict[tuple[str, str], dict[str, Any]] = {}

    # -- connectors -------------------------------------------------------------------------------
    def connectors(self, space: str) -> tuple[list[Connector], list[str]]:
        """The space's connectors, and one line per stored row that could not be built."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(space)
            if hit and hit[0] > now:
                return hit[2], hit[3]
        rows = [r for r in self._rows(space) if r["kind"] != "otlp"]
        sig = tuple((r["name"], r["kind"], repr(sorted((r.get("config") or {}).items()))) for r in rows)
        with self._lock:
            hit = self._cache.get(space)
            if hit and hit[1] == sig:
                self._cache[space] = (now + CACHE_S, sig, hit[2], hit[3])
                return hit[2], hit[3]
        built, broken = [], []
        for r in rows:
            try:
                built.append(build(r["name"], r["kind"], r.get("config") or {}))
            except Exception as exc:     # noqa: BLE001 - one bad row must not take the space down
                broken.append(f"source {r['name']!r} ({r['kind']}) is not usable: {exc}")
        with self._lock:
            old = self._cache.get(space)
            self._cache[space] = (now + CACHE_S, sig, built, broken)
        if old and old[2] is not built:
            _close_later(old[2])
        return built, broken

    def invalidate(self, space: str) -> None:
        with self._lock:
            old = self._cache.pop(space, None)
        if old:
            _close_later(old[2])

    def _call(self, space: str, role: str, method: str, *args: Any) -> tuple[list[tuple[str, Any]], list[str]]:
        """Run ``method`` on every connector serving ``role``; (name, result) pairs and problems."""
        conns, problems = self.connectors(space)
        conns = [c for c in conns if role in c.roles]
        futures = [(c, self._pool.submit(getattr(c, method), *args)) for c in conns]
        out: list[tuple[str, Any]] = []
        for c, fut in futures:
            t0 = time.monotonic()
            try:
                out.append((c.name, fut.result(timeout=c.timeout_s + 1.0)))
                self.status[(space, c.name)] = {"ok": True, "at": time.time(), "message": f"{method} answered"}
            except FutureTimeout:
                msg = f"source {c.name!r} ({c.kind}) did not answer {role} within {c.timeout_s:g} s"
                problems.append(msg)
                self.status[(space, c.name)] = {"ok": False, "at": time.time(), "message": msg}
            except Exception as exc:   # noqa: BLE001 - partial evidence beats a failed investigation
                # a backend may echo the credential in its error: masked before anyone sees it
                msg = scrub(f"source {c.name!r} ({c.kind}) failed on {role}: {_one_line(exc)}", c.config)
                problems.append(msg)
                self.status[(space, c.name)] = {"ok": False, "at": time.time(), "message": msg}
            log.debug("source %s %s took %.3f s", c.name, method, time.monotonic() - t0)
        return out, problems

    def _frame(self, space: str, role: str, embedded: pd.DataFrame, *args: Any) -> pd.DataFrame:
        parts, problems = self._call(space, role, role, *args)
        frames, answered = [embedded], {}
        for name, got in parts:
            try:
                frames.append(_conform(role, got))
                answered[name] = len(got)
                conf = next((c.config for c in self.connectors(space)[0] if c.name == name), None)
                problems.extend(scrub(f"source {name!r}: {p}", conf)
                                for p in (getattr(got, "attrs", {}) or {}).get("problems", []))
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append(f"source {name!r} returned unusable {role}: {exc}")
        nonempty = [f for f in frames if len(f)]
        df = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else (nonempty[0] if nonempty else embedded)
        df.attrs = {"problems": problems,
                    "rows_by_source": {getattr(self.embedded, "name", "embedded"): len(embedded),
                                       **answered}}
        return df

    # -- TelemetrySource --------------------------------------------------------------------------
    def metrics(self, space: str, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        return self._frame(space, "metrics", self.embedded.metrics(space, start, end, resources, names),
                           start, end, resources, names)

    def logs(self, space: str, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        df = self._frame(space, "logs", self.embedded.logs(space, start, end, resources, contains, limit),
                         start, end, resources, contains, limit)
        return df.head(limit) if limit is not None else df

    def spans(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self._frame(space, "spans", self.embedded.spans(space, start, end), start, end)

    def changes(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self._frame(space, "changes", self.embedded.changes(space, start, end), start, end)

    def topology(self, space: str) -> Topology:
        parts, _problems = self._call(space, "topology", "topology")
        return self.embedded.topology(space).merged(*[t for _, t in parts])

    def learn_edges(self, space: str, edges: list[Edge]) -> list[Edge]:
        """Store the call edges the embedded topology lacks (learned from spans); returns those."""
        known = {(e.src, e.dst) for e in self.embedded.topology(space).edges}
        new = [e for e in edges if (e.src, e.dst) not in known]
        if new:
            with self.embedded.transaction() as w:
                w.topology(space, Topology(edges=new))
        return new

    def baselines(self, space: str) -> list[tuple[float, float]]:
        return self.embedded.baselines(space)

    def alerts(self, space: str) -> list[Alert]:
        parts, _problems = self._call(space, "alerts", "alerts")
        out = list(self.embedded.alerts(space))
        for _, alerts in parts:
            out.extend(alerts)
        return sorted(out, key=lambda a: a.at)

    def agent_tool_calls(self, space: str, context: dict[str, Any]) -> list[dict[str, Any]]:
        """Journal records of the space's read-only MCP agent tool calls for an investigation ``context``
        (window + top hypotheses); run here, where the connectors live (see ``sources.mcp_tools``)."""
        from vigil.sources.mcp_tools import agent_tool_calls
        return agent_tool_calls(self.connectors(space)[0], context, self._pool)

    def close(self) -> None:
        with self._lock:
            cached, self._cache = list(self._cache.values()), {}
        for entry in cached:
            for c in entry[2]:
                c.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _close_later(conns: list[Connector], after_s: float = 30.0) -> None:
    """Close replaced connectors once the calls in flight on them had their time."""
    def close() -> None:
        for c in conns:
            try:
                c.close()
            except Exception:   # noqa: BLE001 - closing is best effort
                log.debug("closing source %s failed", c.name)
    t = threading.Timer(after_s, close)
    t.daemon = True
    t.start()


def _conform(role: str, df: pd.DataFrame) -> pd.DataFrame:
    cols = FRAME_COLUMNS[role]
    df = conform(role, df)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"a {role} frame lacks {missing}")
    return df[cols]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
