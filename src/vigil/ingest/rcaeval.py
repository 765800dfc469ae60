"""RCAEval layout: per-case folders with ``inject_time.txt`` (filled in below)."""

from __future__ import annotations

from pathlib import Path

from vigil.ingest.base import Recording


def discover(root: Path) -> list[Recording]:
    return []
