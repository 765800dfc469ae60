"""The telemetry query interface every source serves (embedded DuckDB now; Prometheus,
CloudWatch, Loki, ... later). Times are epoch seconds (UTC); results are pandas frames with
the columns in ``FRAME_COLUMNS`` so the engine never cares where data came from."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from vigil.model import Alert, Topology

FRAME_COLUMNS: dict[str, list[str]] = {
    "metrics": ["resource", "name", "ts", "value"],
    "logs": ["resource", "ts", "level", "body", "trace_id", "span_id"],
    "spans": ["trace_id", "span_id", "parent_id", "resource", "operation", "start", "duration_ms", "error"],
    "changes": ["resource", "ts", "kind", "description", "author", "detail"],
}
# Columns a frame may leave out, with the value they take then. A change's ``detail`` is a JSON object
# (as text) with what its source knows besides the description: the revision and the previous one,
# the diff summary, the changed keys (config keys, environment variables), the deployment, ...
OPTIONAL_COLUMNS: dict[str, dict[str, object]] = {"changes": {"detail": ""}}


def conform(kind: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the optional columns of ``kind`` it lacks filled in (a copy only when one is)."""
    fill = {c: v for c, v in OPTIONAL_COLUMNS.get(kind, {}).items() if c not in df.columns}
    return df.assign(**fill) if fill else df


@runtime_checkable
class TelemetrySource(Protocol):
    name: str

    def metrics(self, space: str, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame: ...

    def logs(self, space: str, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame: ...

    def spans(self, space: str, start: float, end: float) -> pd.DataFrame: ...

    def changes(self, space: str, start: float, end: float) -> pd.DataFrame: ...

    def topology(self, space: str) -> Topology: ...

    def baselines(self, space: str) -> list[tuple[float, float]]:
        """Windows an operator (or a dataset) marked as fault-free."""
        ...

    def alerts(self, space: str) -> list[Alert]: ...
