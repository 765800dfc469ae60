"""The application: the stores (opened lazily), the space's sources and the services (``vigil.services``)
that the interfaces (CLI, the HTTP API and console of ``vigil serve``, MCP) are thin over."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from vigil.config import Settings
from vigil.engine import Analysis
from vigil.errors import InputError, NotFound, VigilError
from vigil.ingest import Recording, discover
from vigil.model import AgentSpace, Alert, ApiToken, Investigation, Role
from vigil.services import Services
from vigil.sources.router import SpaceSources
from vigil.store.state import StateStore
from vigil.store.telemetry import TelemetryStore


def space_name(text: str) -> str:
    s = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")
    return (s or "space")[:63]


@dataclass
class ImportResult:
    space: str
    dataset: str
    cases: int
    rows: dict[str, int]
    warnings: list[str] = field(default_factory=list)


class App:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = (settings or Settings.from_env()).ensure()
        self._state: StateStore | None = None
        self._telemetry: TelemetryStore | None = None
        self._sources: SpaceSources | None = None
        self._services: Services | None = None

    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore(self.settings.database_url)
        return self._state

    @property
    def telemetry(self) -> TelemetryStore:
        if self._telemetry is None and self.settings.telemetry_url:
            if not self.settings.telemetry_url.startswith("postgresql"):
                raise VigilError("scale-out mode keeps telemetry in PostgreSQL: set VIGIL_DATABASE_URL (or "
                                 "VIGIL_TELEMETRY_URL) to a postgresql+psycopg:// URL")
            from vigil.store.telemetry_pg import PgTelemetryStore
            self._telemetry = PgTelemetryStore(self.settings.telemetry_url)  # type: ignore[assignment]
        if self._telemetry is None:
            try:
                self._telemetry = TelemetryStore(self.settings.telemetry_path)
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    raise VigilError(f"the telemetry store {self.settings.telemetry_path} is in use by another "
                                     "process (is `vigil serve` running? it owns the store while it runs)") from None
                raise
        return self._telemetry

    @property
    def sources(self) -> SpaceSources:
        """What investigations query: the embedded store plus the space's registered connectors."""
        if self._sources is None:
            self._sources = SpaceSources(self.telemetry, self.state.list_sources)
        return self._sources

    @property
    def services(self) -> Services:
        """The application services; ``vigil serve`` replaces them with ones wired to its workers."""
        if self._services is None:
            self._services = Services(self)
        return self._services

    @services.setter
    def services(self, value: Services) -> None:
        self._services = value

    def state_location(self) -> str:
        """Where the state lives, for messages (a password in the URL is masked)."""
        return self.state.engine.url.render_as_string()

    def close(self) -> None:
        if self._sources is not None:
            self._sources.close()
            self._sources = None
        if self._telemetry is not None:
            self._telemetry.close()
        if self._state is not None:
            self._state.close()

    # -- spaces and tokens ---------------------------------------------------------------------
    def create_space(self, space_id: str, description: str = "") -> AgentSpace:
        return self.services.spaces.create(space_id, "cli", description)

    def create_token(self, space_id: str, role: Role, name: str = "") -> tuple[str, ApiToken]:
        return self.services.tokens.create(space_id, role, name, "cli")

    # -- import --------------------------------------------------------------------------------
    def discover(self, paths: list[Path]) -> list[Recording]:
        return discover(paths)

    def import_recording(self, rec: Recording, space: str, replace: bool = False) -> ImportResult:
        space = space_name(space)
        existing = self.telemetry.counts(space)
        if any(existing.values()) and not replace:
            raise InputError(f"space {space!r} already holds telemetry; pass --replace to reload it")
        # all-or-nothing: the old data is dropped and the new loaded in one transaction
        with self.telemetry.transaction() as w:
            if replace:
                w.drop_space(space)
            warnings = rec.load(w, space)
        self.services.spaces.imported(space, f"{rec.format} recording {rec.dataset}", "cli", str(rec.path),
                                      rec.dataset)
        return ImportResult(space=space, dataset=rec.dataset, cases=len(rec.cases),
                            rows=self.telemetry.counts(space), warnings=warnings)

    # -- investigate ---------------------------------------------------------------------------
    def alerts(self, space: str) -> list[Alert]:
        self.services.spaces.get(space)
        return self.sources.alerts(space)

    def investigate(self, space: str, at: datetime | None = None, alert_id: str | None = None,
                    latest: bool = False) -> tuple[Investigation, Analysis]:
        self.services.spaces.get(space)
        alert = None
        if alert_id or latest:
            alerts = self.sources.alerts(space)
            if alert_id:
                alert = next((a for a in alerts if a.id == alert_id), None)
                if alert is None:
                    raise NotFound(f"no alert {alert_id!r} in space {space!r}")
            else:
                if not alerts:
                    raise NotFound(f"space {space!r} has no alerts; give --at TIME instead")
                alert = alerts[-1]
            at = alert.at
        if at is None:
            raise InputError("say when: --at TIME, --alert ID or --latest")
        inv = self.services.investigations.start_at(space, at, "cli", alert=alert)
        analysis = self.services.investigations.run_here(inv)
        return self.services.investigations.get(space, inv.id), analysis

    # -- report --------------------------------------------------------------------------------
    def report(self, inv_id: str, fmt: str = "html", out: Path | None = None) -> Path:
        text = self.services.investigations.report(None, inv_id, fmt)
        path = out or self.settings.reports_dir / f"{inv_id}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path
