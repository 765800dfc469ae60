"""Embedded columnar telemetry store (DuckDB) serving the ``TelemetrySource`` interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from vigil.errors import InputError
from vigil.frames import FRAME_COLUMNS, conform, python_strings
from vigil.model import Alert, Edge, Resource, Topology

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (space VARCHAR, resource VARCHAR, name VARCHAR, ts DOUBLE, value DOUBLE);
CREATE TABLE IF NOT EXISTS logs (space VARCHAR, resource VARCHAR, ts DOUBLE, level VARCHAR, body VARCHAR,
                                 trace_id VARCHAR, span_id VARCHAR);
CREATE TABLE IF NOT EXISTS spans (space VARCHAR, trace_id VARCHAR, span_id VARCHAR, parent_id VARCHAR,
                                  resource VARCHAR, operation VARCHAR, start DOUBLE, duration_ms DOUBLE,
                                  error BOOLEAN);
CREATE TABLE IF NOT EXISTS changes (space VARCHAR, resource VARCHAR, ts DOUBLE, kind VARCHAR,
                                    description VARCHAR, author VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS edges (space VARCHAR, src VARCHAR, dst VARCHAR, kind VARCHAR, source VARCHAR,
                                  weight DOUBLE);
CREATE TABLE IF NOT EXISTS resources (space VARCHAR, name VARCHAR, kind VARCHAR, attributes VARCHAR);
CREATE TABLE IF NOT EXISTS baselines (space VARCHAR, start DOUBLE, "end" DOUBLE, note VARCHAR);
CREATE TABLE IF NOT EXISTS alerts (space VARCHAR, id VARCHAR, title VARCHAR, "at" DOUBLE, resource VARCHAR,
                                   metric VARCHAR, labels VARCHAR);
"""
_TABLES = ("metrics", "logs", "spans", "changes", "edges", "resources", "baselines", "alerts")


class TelemetryStore:
    """One DuckDB file (or ``:memory:``). All writes of one import happen in one transaction."""

    name = "embedded"

    def __init__(self, path: Path | str = ":memory:", read_only: bool = False) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._con = duckdb.connect(self.path, read_only=read_only)
        self._lock = threading.RLock()
        if not read_only:
            self._con.execute(_SCHEMA)
            # stores made before changes carried their detail
            self._con.execute("ALTER TABLE changes ADD COLUMN IF NOT EXISTS detail VARCHAR")

    def close(self) -> None:
        self._con.close()

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[TelemetryWriter]:
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield TelemetryWriter(self._con)
                self._con.execute("COMMIT")
            except BaseException:
                try:
                    self._con.execute("ROLLBACK")
                except duckdb.Error:    # a failed COMMIT (a full disk) already rolled back: keep its error
                    pass
                raise

    def drop_space(self, space: str) -> None:
        with self.transaction() as w:
            w.drop_space(space)

    def spaces(self) -> list[str]:
        with self._lock:
            rows = self._con.execute(
                "SELECT DISTINCT space FROM metrics UNION SELECT DISTINCT space FROM logs "
                "UNION SELECT DISTINCT space FROM spans UNION SELECT DISTINCT space FROM alerts ORDER BY 1"
            ).fetchall()
        return [r[0] for r in rows]

    def counts(self, space: str) -> dict[str, int]:
        with self._lock:
            return {t: self._con.execute(f"SELECT count(*) FROM {t} WHERE space = ?", [space]).fetchone()[0]
                    for t in ("metrics", "logs", "spans", "changes", "alerts")}

    def extent(self, space: str) -> tuple[float, float] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT min(t0), max(t1) FROM ("
                " SELECT min(ts) t0, max(ts) t1 FROM metrics WHERE space = $s"
                " UNION ALL SELECT min(ts), max(ts) FROM logs WHERE space = $s"
                " UNION ALL SELECT min(start), max(start) FROM spans WHERE space = $s)", {"s": space}
            ).fetchone()
        return None if row[0] is None else (float(row[0]), float(row[1]))

    # -- the TelemetrySource interface ---------------------------------------------------------
    def _frame(self, sql: str, params: list, kind: str) -> pd.DataFrame:
        # strings as Python objects: converting each to pandas 3's Arrow strings, only for the engine
        # to convert them back, was a third of the time an observation took to build
        with self._lock, python_strings():
            df = self._con.execute(sql, params).df()
        return df[FRAME_COLUMNS[kind]] if len(df.columns) else pd.DataFrame(columns=FRAME_COLUMNS[kind])

    def metrics(self, space: str, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        sql = "SELECT resource, name, ts, value FROM metrics WHERE space = ? AND ts >= ? AND ts < ?"
        params: list = [space, start, end]
        if resources:
            sql += " AND list_contains(?, resource)"
            params.append(resources)
        if names:
            sql += " AND list_contains(?, name)"
            params.append(names)
        return self._frame(sql + " ORDER BY resource, name, ts", params, "metrics")

    def logs(self, space: str, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        sql = "SELECT resource, ts, level, body, trace_id, span_id FROM logs WHERE space = ? AND ts >= ? AND ts < ?"
        params: list = [space, start, end]
        if resources:
            sql += " AND list_contains(?, resource)"
            params.append(resources)
        if contains:
            sql += " AND contains(body, ?)"
            params.append(contains)
        sql += " ORDER BY ts"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._frame(sql, params, "logs")

    def spans(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self._frame(
            "SELECT trace_id, span_id, parent_id, resource, operation, start, duration_ms, error FROM spans "
            "WHERE space = ? AND start >= ? AND start < ? ORDER BY start", [space, start, end], "spans")

    def changes(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self._frame(
            "SELECT resource, ts, kind, description, author, coalesce(detail, '') AS detail FROM changes WHERE space = ? AND ts >= ? AND ts < ? "
            "ORDER BY ts", [space, start, end], "changes")

    def topology(self, space: str) -> Topology:
        with self._lock:     # columns, not Python rows: several times faster for thousands of services
            res = self._con.execute("SELECT name, kind, attributes FROM resources WHERE space = ? ORDER BY name",
                                    [space]).fetchnumpy()
            edges = self._con.execute("SELECT src, dst, kind, source, weight FROM edges WHERE space = ?",
                                      [space]).fetchnumpy()
        cols = [res[c].tolist() for c in ("name", "kind", "attributes")]
        ecols = [edges[c].tolist() for c in ("src", "dst", "kind", "source", "weight")]
        return Topology(
            resources=[Resource(name=n, kind=k, attributes=json.loads(a) if a and a != "{}" else {})
                       for n, k, a in zip(*cols, strict=True)],
            edges=[Edge(src=s, dst=d, kind=k, source=src, weight=w) for s, d, k, src, w in zip(*ecols, strict=True)],
        )

    def baselines(self, space: str) -> list[tuple[float, float]]:
        with self._lock:
            rows = self._con.execute('SELECT start, "end" FROM baselines WHERE space = ? ORDER BY start',
                                     [space]).fetchall()
        return [(float(a), float(b)) for a, b in rows]

    def alerts(self, space: str) -> list[Alert]:
        with self._lock:
            rows = self._con.execute(
                'SELECT id, title, "at", resource, metric, labels FROM alerts WHERE space = ? ORDER BY "at", id',
                [space]).fetchall()
        return [Alert(id=i, title=t, at=datetime.fromtimestamp(at, UTC), resource=r, metric=m,
                      labels=json.loads(lb or "{}")) for i, t, at, r, m, lb in rows]


class TelemetryWriter:
    """Writes inside one open transaction (see ``TelemetryStore.transaction``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def drop_space(self, space: str) -> None:
        for t in _TABLES:
            self._con.execute(f"DELETE FROM {t} WHERE space = ?", [space])

    def _insert(self, table: str, space: str, df: pd.DataFrame, columns: list[str]) -> int:
        if df is None or df.empty:
            return 0
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise InputError(f"{table}: missing columns {missing}")
        frame = df[columns]
        self._con.register("_incoming", frame)
        try:
            cols = ", ".join(f'"{c}"' for c in columns)
            self._con.execute(f"INSERT INTO {table} (space, {cols}) SELECT ?, {cols} FROM _incoming", [space])
        finally:
            self._con.unregister("_incoming")
        return len(frame)

    def metrics(self, space: str, df: pd.DataFrame) -> int:
        df = df.dropna(subset=["value"])
        return self._insert("metrics", space, df, FRAME_COLUMNS["metrics"])

    def logs(self, space: str, df: pd.DataFrame) -> int:
        return self._insert("logs", space, df, FRAME_COLUMNS["logs"])

    def spans(self, space: str, df: pd.DataFrame) -> int:
        return self._insert("spans", space, df, FRAME_COLUMNS["spans"])

    def changes(self, space: str, df: pd.DataFrame) -> int:
        return self._insert("changes", space, conform("changes", df), FRAME_COLUMNS["changes"])

    def topology(self, space: str, topo: Topology) -> None:
        if topo.resources:
            self._insert("resources", space, pd.DataFrame(
                [{"name": r.name, "kind": r.kind, "attributes": json.dumps(r.attributes)} for r in topo.resources]),
                ["name", "kind", "attributes"])
        if topo.edges:
            self._insert("edges", space, pd.DataFrame(
                [{"src": e.src, "dst": e.dst, "kind": str(e.kind), "source": str(e.source), "weight": e.weight}
                 for e in topo.edges]), ["src", "dst", "kind", "source", "weight"])

    def baseline(self, space: str, start: float, end: float, note: str = "") -> None:
        self._con.execute("INSERT INTO baselines VALUES (?, ?, ?, ?)", [space, start, end, note])

    def alert(self, space: str, alert: Alert) -> None:
        self._con.execute("INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?)", [
            space, alert.id, alert.title, alert.at.timestamp(), alert.resource, alert.metric,
            json.dumps(alert.labels)])
