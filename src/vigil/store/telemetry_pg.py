"""Telemetry in PostgreSQL: the ``TelemetryStore`` interface for scale-out mode.

The embedded DuckDB file has one writer, the process that opened it, so with several ``vigil serve``
replicas (each taking OTLP) and ``vigil worker`` processes (each reading an incident's telemetry) it
cannot be shared. In scale-out mode telemetry lives in PostgreSQL instead: ``VIGIL_TELEMETRY_URL``, by
default the state database, in tables of its own (``telemetry_*``, made here, not by the state's
migrations: they may live in another database). Every replica writes there, every worker reads there;
one OTLP request is one transaction, as in the embedded store. Rows are bulk-loaded with ``COPY``.
Resources and edges are unique per space (two replicas learning the same service store it once)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import create_engine

from vigil.errors import InputError
from vigil.frames import FRAME_COLUMNS, conform
from vigil.model import Alert, Edge, Resource, Topology

_DDL = """
CREATE TABLE IF NOT EXISTS telemetry_metrics (space TEXT NOT NULL, resource TEXT, name TEXT,
    ts DOUBLE PRECISION, value DOUBLE PRECISION);
CREATE INDEX IF NOT EXISTS telemetry_metrics_space_ts ON telemetry_metrics (space, ts);
CREATE TABLE IF NOT EXISTS telemetry_logs (space TEXT NOT NULL, resource TEXT, ts DOUBLE PRECISION, level TEXT,
    body TEXT, trace_id TEXT, span_id TEXT);
CREATE INDEX IF NOT EXISTS telemetry_logs_space_ts ON telemetry_logs (space, ts);
CREATE TABLE IF NOT EXISTS telemetry_spans (space TEXT NOT NULL, trace_id TEXT, span_id TEXT, parent_id TEXT,
    resource TEXT, operation TEXT, start DOUBLE PRECISION, duration_ms DOUBLE PRECISION, error BOOLEAN);
CREATE INDEX IF NOT EXISTS telemetry_spans_space_start ON telemetry_spans (space, start);
CREATE TABLE IF NOT EXISTS telemetry_changes (space TEXT NOT NULL, resource TEXT, ts DOUBLE PRECISION, kind TEXT,
    description TEXT, author TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS telemetry_changes_space_ts ON telemetry_changes (space, ts);
CREATE TABLE IF NOT EXISTS telemetry_edges (space TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL,
    kind TEXT NOT NULL, source TEXT NOT NULL, weight DOUBLE PRECISION, UNIQUE (space, src, dst, kind, source));
CREATE TABLE IF NOT EXISTS telemetry_resources (space TEXT NOT NULL, name TEXT NOT NULL, kind TEXT,
    attributes TEXT, UNIQUE (space, name));
CREATE TABLE IF NOT EXISTS telemetry_baselines (space TEXT NOT NULL, start DOUBLE PRECISION,
    "end" DOUBLE PRECISION, note TEXT);
CREATE TABLE IF NOT EXISTS telemetry_alerts (space TEXT NOT NULL, id TEXT, title TEXT, "at" DOUBLE PRECISION,
    resource TEXT, metric TEXT, labels TEXT);
"""
_TABLES = ("metrics", "logs", "spans", "changes", "edges", "resources", "baselines", "alerts")


def _t(name: str) -> str:
    return f"telemetry_{name}"


class PgTelemetryStore:
    """The embedded store's interface over PostgreSQL (``url``: a SQLAlchemy ``postgresql+psycopg`` URL)."""

    name = "embedded"

    def __init__(self, url: str) -> None:
        self.path = url
        self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        if self.engine.dialect.name != "postgresql":
            raise InputError("VIGIL_TELEMETRY_URL must point at PostgreSQL (postgresql+psycopg://...)")
        self._lock = threading.RLock()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7412002)")   # replicas start together
            for stmt in filter(str.strip, _DDL.split(";")):
                conn.exec_driver_sql(stmt)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _raw(self) -> Iterator[Any]:
        """A pooled psycopg connection (returned to the pool afterwards)."""
        fairy = self.engine.raw_connection()
        try:
            yield fairy.driver_connection
        finally:
            fairy.close()

    def _rows(self, sql: str, params: list | dict | None = None) -> list[tuple]:
        with self._raw() as con:
            try:
                with con.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall()
                con.commit()
                return rows
            except BaseException:
                con.rollback()
                raise

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[PgTelemetryWriter]:
        with self._raw() as con:
            try:
                yield PgTelemetryWriter(con)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def drop_space(self, space: str) -> None:
        with self.transaction() as w:
            w.drop_space(space)

    def spaces(self) -> list[str]:
        rows = self._rows(" UNION ".join(f"SELECT DISTINCT space FROM {_t(t)}"
                                         for t in ("metrics", "logs", "spans", "alerts")) + " ORDER BY 1")
        return [r[0] for r in rows]

    def counts(self, space: str) -> dict[str, int]:
        tables = ("metrics", "logs", "spans", "changes", "alerts")
        row = self._rows("SELECT " + ", ".join(f"(SELECT count(*) FROM {_t(t)} WHERE space = %(s)s)" for t in tables),
                         {"s": space})[0]
        return dict(zip(tables, (int(n) for n in row), strict=True))

    def extent(self, space: str) -> tuple[float, float] | None:
        row = self._rows(
            "SELECT min(t0), max(t1) FROM ("
            " SELECT min(ts) t0, max(ts) t1 FROM telemetry_metrics WHERE space = %(s)s"
            " UNION ALL SELECT min(ts), max(ts) FROM telemetry_logs WHERE space = %(s)s"
            " UNION ALL SELECT min(start), max(start) FROM telemetry_spans WHERE space = %(s)s) x", {"s": space})[0]
        return None if row[0] is None else (float(row[0]), float(row[1]))

    # -- the TelemetrySource interface ---------------------------------------------------------
    def _frame(self, sql: str, params: list, kind: str) -> pd.DataFrame:
        cols = FRAME_COLUMNS[kind]
        rows = self._rows(sql, params)
        df = pd.DataFrame.from_records(rows, columns=cols)
        for c in ("ts", "value", "start", "duration_ms"):
            if c in df.columns:
                df[c] = df[c].astype(float)
        if "error" in df.columns:
            df["error"] = df["error"].astype(bool)
        return df

    def metrics(self, space: str, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        sql = "SELECT resource, name, ts, value FROM telemetry_metrics WHERE space = %s AND ts >= %s AND ts < %s"
        params: list = [space, start, end]
        if resources:
            sql += " AND resource = ANY(%s)"
            params.append(list(resources))
        if names:
            sql += " AND name = ANY(%s)"
            params.append(list(names))
        return self._frame(sql + " ORDER BY resource, name, ts", params, "metrics")

    def logs(self, space: str, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        sql = ("SELECT resource, ts, level, body, trace_id, span_id FROM telemetry_logs "
               "WHERE space = %s AND ts >= %s AND ts < %s")
        params: list = [space, start, end]
        if resources:
            sql += " AND resource = ANY(%s)"
            params.append(list(resources))
        if contains:
            sql += " AND strpos(body, %s) > 0"
            params.append(contains)
        sql += " ORDER BY ts"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._frame(sql, params, "logs")

    def spans(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self._frame(
            "SELECT trace_id, span_id, parent_id, resource, operation, start, duration_ms, error FROM telemetry_spans "
            "WHERE space = %s AND start >= %s AND start < %s ORDER BY start", [space, start, end], "spans")

    def changes(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self._frame(
            "SELECT resource, ts, kind, description, author, coalesce(detail, '') FROM telemetry_changes "
            "WHERE space = %s AND ts >= %s AND ts < %s ORDER BY ts", [space, start, end], "changes")

    def topology(self, space: str) -> Topology:
        res = self._rows("SELECT name, kind, attributes FROM telemetry_resources WHERE space = %s ORDER BY name",
                         [space])
        edges = self._rows("SELECT src, dst, kind, source, weight FROM telemetry_edges WHERE space = %s", [space])
        return Topology(
            resources=[Resource(name=n, kind=k, attributes=json.loads(a) if a and a != "{}" else {})
                       for n, k, a in res],
            edges=[Edge(src=s, dst=d, kind=k, source=src, weight=w) for s, d, k, src, w in edges],
        )

    def baselines(self, space: str) -> list[tuple[float, float]]:
        rows = self._rows('SELECT start, "end" FROM telemetry_baselines WHERE space = %s ORDER BY start', [space])
        return [(float(a), float(b)) for a, b in rows]

    def alerts(self, space: str) -> list[Alert]:
        rows = self._rows('SELECT id, title, "at", resource, metric, labels FROM telemetry_alerts WHERE space = %s '
                          'ORDER BY "at", id', [space])
        return [Alert(id=i, title=t, at=datetime.fromtimestamp(at, UTC), resource=r, metric=m,
                      labels=json.loads(lb or "{}")) for i, t, at, r, m, lb in rows]


def _cell(v: Any) -> str:
    """One value in COPY's text format."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return "\\N"
    if isinstance(v, (bool, np.bool_)):
        return "t" if v else "f"
    s = str(v)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class PgTelemetryWriter:
    """Writes inside one open transaction (see ``PgTelemetryStore.transaction``)."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def drop_space(self, space: str) -> None:
        with self._con.cursor() as cur:
            for t in _TABLES:
                cur.execute(f"DELETE FROM {_t(t)} WHERE space = %s", [space])

    def _copy(self, table: str, space: str, df: pd.DataFrame, columns: list[str]) -> int:
        if df is None or df.empty:
            return 0
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise InputError(f"{table}: missing columns {missing}")
        frame = df[columns]
        buf = io.StringIO()
        sp = _cell(space)
        for row in frame.itertuples(index=False, name=None):
            buf.write(sp + "\t" + "\t".join(_cell(v) for v in row) + "\n")
        cols = ", ".join(f'"{c}"' for c in ["space", *columns])
        with self._con.cursor() as cur, cur.copy(f"COPY {_t(table)} ({cols}) FROM STDIN") as cp:
            cp.write(buf.getvalue())
        return len(frame)

    def metrics(self, space: str, df: pd.DataFrame) -> int:
        df = df.dropna(subset=["value"])
        return self._copy("metrics", space, df, FRAME_COLUMNS["metrics"])

    def logs(self, space: str, df: pd.DataFrame) -> int:
        return self._copy("logs", space, df, FRAME_COLUMNS["logs"])

    def spans(self, space: str, df: pd.DataFrame) -> int:
        return self._copy("spans", space, df, FRAME_COLUMNS["spans"])

    def changes(self, space: str, df: pd.DataFrame) -> int:
        return self._copy("changes", space, conform("changes", df), FRAME_COLUMNS["changes"])

    def topology(self, space: str, topo: Topology) -> None:
        with self._con.cursor() as cur:
            if topo.resources:
                cur.executemany("INSERT INTO telemetry_resources (space, name, kind, attributes) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT DO NOTHING",
                                [(space, r.name, r.kind, json.dumps(r.attributes)) for r in topo.resources])
            if topo.edges:
                cur.executemany("INSERT INTO telemetry_edges (space, src, dst, kind, source, weight) "
                                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                [(space, e.src, e.dst, str(e.kind), str(e.source), e.weight) for e in topo.edges])

    def baseline(self, space: str, start: float, end: float, note: str = "") -> None:
        with self._con.cursor() as cur:
            cur.execute('INSERT INTO telemetry_baselines (space, start, "end", note) VALUES (%s, %s, %s, %s)',
                        [space, start, end, note])

    def alert(self, space: str, alert: Alert) -> None:
        with self._con.cursor() as cur:
            cur.execute('INSERT INTO telemetry_alerts (space, id, title, "at", resource, metric, labels) '
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [space, alert.id, alert.title, alert.at.timestamp(), alert.resource, alert.metric,
                         json.dumps(alert.labels)])
