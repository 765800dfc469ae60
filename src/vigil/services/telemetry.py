"""Reading telemetry for the interfaces: what a space's embedded store holds, its recorded alerts, and
metrics, logs, spans, alerts and topology through the space's sources (the embedded store plus its
connectors, ``vigil.sources.router``). Reads only: telemetry is written by ingestion (OTLP, imports,
change webhooks)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vigil.model import Alert, Topology


class TelemetryService:
    def __init__(self, app: Any) -> None:
        self.app = app

    def open(self) -> None:
        """Open the telemetry store now: one held by another process is a clear error at start."""
        _ = self.app.telemetry

    # -- the embedded store --------------------------------------------------------------------
    def counts(self, space: str) -> dict[str, int]:
        return self.app.telemetry.counts(space)

    def extent(self, space: str) -> tuple[float, float] | None:
        """(first, last) unix seconds of the space's telemetry, or None when it holds none."""
        return self.app.telemetry.extent(space)

    def recorded_alerts(self, space: str) -> list[Alert]:
        """Alerts recorded with imported telemetry (not those delivered to the webhooks: see incidents)."""
        return self.app.telemetry.alerts(space)

    # -- through the space's sources ------------------------------------------------------------
    def alerts(self, space: str) -> list[Alert]:
        return self.app.sources.alerts(space)

    def topology(self, space: str) -> Topology:
        """The space's topology from the store and its connectors (raises when a connector cannot answer)."""
        return self.app.sources.topology(space)

    def topology_or_embedded(self, space: str) -> tuple[Topology, str | None]:
        """The space's topology from the store and its connectors; when the connectors cannot answer, the
        embedded store's alone and what went wrong (one line)."""
        try:
            return self.app.sources.topology(space), None
        except Exception as exc:        # noqa: BLE001 - the embedded store's topology still shows
            return self.app.telemetry.topology(space), f"the connectors' topology is unavailable: " \
                                                       f"{type(exc).__name__}"

    def metrics(self, space: str, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        return self.app.sources.metrics(space, start, end, resources, names)

    def logs(self, space: str, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        return self.app.sources.logs(space, start, end, resources, contains, limit)

    def spans(self, space: str, start: float, end: float) -> pd.DataFrame:
        return self.app.sources.spans(space, start, end)

    def source_status(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The connectors' last answers in this process: {(space, source): {ok, at, message}}."""
        return dict(getattr(self.app.sources, "status", {}) or {})
