"""Telemetry ingestion over OTLP: a decoded export request is turned into the store's frames (each
resource named by the attribute the space's ``otlp`` source says, ``service.name`` by default) and stored
in the space. Decompression and the wire format's limits are the HTTP layer's."""

from __future__ import annotations

import threading
import time
from typing import Any

from vigil.ingest.otlp import Decoded, OtlpIngest

DEFAULT_KEY = "service.name"
KEY_TTL_S = 5.0


class IngestService:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._pipeline: OtlpIngest | None = None
        self._keys: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> OtlpIngest:
        """The OTLP decoder and writer (it keeps the cumulative-metric state of this process)."""
        with self._lock:
            if self._pipeline is None:
                self._pipeline = OtlpIngest(self.app.telemetry)
            return self._pipeline

    def resource_key(self, space: str) -> str:
        """Which OTLP resource attribute names a resource in this space (an ``otlp`` source may say)."""
        now = time.monotonic()
        hit = self._keys.get(space)
        if hit and hit[0] > now:
            return hit[1]
        key = DEFAULT_KEY
        with self.app.state.read() as u:
            for src in u.sources.list(space):
                if src["kind"] == "otlp":
                    key = str(src["config"].get("resource_attribute") or key)
        self._keys[space] = (now + KEY_TTL_S, key)
        return key

    def forget(self, space: str) -> None:
        """The space's sources changed: read its resource attribute again."""
        self._keys.pop(space, None)

    def otlp(self, signal: str, space: str, request: Any) -> tuple[Decoded, int]:
        """Decode a parsed OTLP export request (traces, logs or metrics) and store it in the space: the
        decoded batch (with what it rejected) and how many items were stored."""
        pipeline = self.pipeline
        dec = pipeline.decode(signal, request, space, self.resource_key(space))
        return dec, pipeline.store(signal, space, dec)
