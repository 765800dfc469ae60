"""The telemetry query interface every source serves (embedded DuckDB now; Prometheus,
CloudWatch, Loki, ... later). Times are epoch seconds (UTC); results are pandas frames with
the columns in ``FRAME_COLUMNS`` so the engine never cares where data came from."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from vigil.frames import FRAME_COLUMNS, OPTIONAL_COLUMNS, conform  # noqa: F401  (re-exported for sources)
from vigil.model import Alert, Topology


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
