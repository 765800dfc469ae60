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

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("VIGIL_HOME") or Path.home() / ".vigil").expanduser()
        url = os.environ.get("VIGIL_DATABASE_URL") or f"sqlite:///{home / 'state.db'}"
        return cls(
            home=home,
            database_url=url,
            telemetry_path=home / "telemetry.duckdb",
            reports_dir=home / "reports",
        )

    def ensure(self) -> Settings:
        self.home.mkdir(parents=True, exist_ok=True)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        return self
