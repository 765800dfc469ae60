"""The application layer: one place where each action happens. The API, the console, MCP and the CLI
call these services, never the store; each service writes its change and the audit entry that records
it in one transaction (a ``UnitOfWork`` over the repositories in ``vigil.store.repos``), then tells the
process (``Hooks``: wake the workers, live journal streams, caches).

    spaces          create, change, import          SpaceService
    tokens          create, list, revoke, resolve   TokenService
    sources         register, check, delete, apply  SourceService
    integrations    configure, delete, secrets      IntegrationService
    webhooks        verify and parse deliveries     WebhookService (the trigger registry)
    investigations  start (the one path), cancel,   InvestigationService
                    judge, journal, reports
    alerts          accept (dedup, grouping),       AlertService
                    incidents
    changes         change events from webhooks     ChangeService
    audit           the audit log                   AuditService
    console         the console's bounded reads     ConsoleService
    sessions        console sign-in and sign-out    SessionService
    telemetry       what the stores and connectors  TelemetryService
                    hold (reads)
    ingest          OTLP exports into a space       IngestService
    respond         mitigation, actions, outbox     vigil.respond.service.RespondService
"""

from __future__ import annotations

from typing import Any

from vigil.services.alerts import AlertService
from vigil.services.audit import AuditService
from vigil.services.changes import ChangeService
from vigil.services.console import ConsoleService
from vigil.services.hooks import Hooks
from vigil.services.ingest import IngestService
from vigil.services.integrations import IntegrationService
from vigil.services.investigations import InvestigationService
from vigil.services.sessions import SessionService
from vigil.services.sources import SourceService
from vigil.services.spaces import SpaceService
from vigil.services.telemetry import TelemetryService
from vigil.services.tokens import TokenService
from vigil.services.webhooks import WebhookService

__all__ = ["Hooks", "Services"]


class Services:
    """Every service over one application (``vigil.app.App``: the state store, the telemetry store and
    the space's sources, opened lazily)."""

    def __init__(self, app: Any, hooks: Hooks | None = None, engine_settings: Any = None, max_attempts: int = 3,
                 webhook_settings: Any = None, session_store: Any = None) -> None:
        """``session_store``: where console sessions live (``vigil.store.sessions``; default: this
        process's memory)."""
        self.app = app
        self.hooks = hooks or Hooks()
        store = _Lazy(app)
        self.audit = AuditService(store)
        self.spaces = SpaceService(store)
        self.tokens = TokenService(store, self.hooks)
        self.sources = SourceService(app, self.hooks)
        self.integrations = IntegrationService(store)
        self.webhooks = WebhookService(self.integrations, webhook_settings)
        self.investigations = InvestigationService(app, self.hooks, engine_settings, max_attempts)
        self.alerts = AlertService(store, self.investigations, self.hooks)
        self.changes = ChangeService(app)
        self.console = ConsoleService(store)
        if session_store is None:
            from vigil.store.sessions import MemorySessionStore
            session_store = MemorySessionStore()
        self.sessions = SessionService(session_store, self.audit)
        self.telemetry = TelemetryService(app)
        self.ingest = IngestService(app)
        self._respond = None

    @property
    def respond(self) -> Any:
        """Respond and prevent (``vigil.respond``): mitigation specs, actions, notifications, chat. Reruns
        need workers (``vigil serve``)."""
        if self._respond is None:
            from vigil.respond.service import RespondService
            inv = self.investigations
            self._respond = RespondService(self.app.state, self.app.sources,
                                           start_linked=inv.start_linked if self.hooks.queue else None,
                                           wake=self.hooks.outbox, touch=self.hooks.touch,
                                           judge=inv.judge if self.hooks.queue else None)
        return self._respond


class _Lazy:
    """The state store, opened on first use (``App.state``)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app.state, name)
