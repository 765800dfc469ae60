"""Where Vigil keeps its data: one directory, ``$VIGIL_HOME`` (default ``~/.vigil``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    telemetry_path: Path
    reports_dir: Path
    # PostgreSQL for telemetry instead of the DuckDB file: VIGIL_TELEMETRY_URL, or in scale-out mode
    # (VIGIL_BROKER_URL set) the state database, since the DuckDB file has a single writer
    telemetry_url: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("VIGIL_HOME") or Path.home() / ".vigil").expanduser()
        url = os.environ.get("VIGIL_DATABASE_URL") or f"sqlite:///{home / 'state.db'}"
        telemetry_url = os.environ.get("VIGIL_TELEMETRY_URL", "").strip()
        if not telemetry_url and os.environ.get("VIGIL_BROKER_URL", "").strip():
            telemetry_url = url
        return cls(
            home=home,
            database_url=url,
            telemetry_path=home / "telemetry.duckdb",
            reports_dir=home / "reports",
            telemetry_url=telemetry_url,
        )

    def ensure(self) -> Settings:
        self.home.mkdir(parents=True, exist_ok=True)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        return self
