"""RCD layout: ``<service>-<fault>/<run>/{normal.csv,anomalous.csv}`` (filled in below)."""

from __future__ import annotations

from pathlib import Path

from vigil.ingest.base import Recording


def discover(root: Path) -> list[Recording]:
    return []
