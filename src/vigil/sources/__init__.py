"""Telemetry sources: one narrow query interface, many connectors."""

from vigil.sources.base import FRAME_COLUMNS, TelemetrySource

__all__ = ["FRAME_COLUMNS", "TelemetrySource"]
