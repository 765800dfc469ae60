"""The server process's runtime: owns the state store, the (single-process) telemetry store, the
worker pool, OTLP ingestion, the change feed and the metrics, and wires the application services
(``vigil.services``) to them. The API layer calls the services (``rt.services``) and this."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from vigil.app import App
from vigil.engine import Settings as EngineSettings
from vigil.ingest.otlp import OtlpIngest
from vigil.model import (
    AlertOutcome,
    ApiToken,
    Hypothesis,
    HypothesisState,
    IncomingAlert,
    Investigation,
    JournalKind,
    StartingPoint,
)
from vigil.server.admission import Admission
from vigil.server.alertnotes import AlertNotes
from vigil.server.feed import ChangeFeed
from vigil.server.metrics import ServerMetrics
from vigil.server.settings import ServerSettings
from vigil.server.worker import WorkerPool
from vigil.services import Hooks, Services
from vigil.store.state import hash_token, new_id

log = logging.getLogger("vigil.server")


class TokenCache:
    """Token look-ups for the hot path (OTLP); revocations made here take effect at once, those made
    by another process within ``ttl`` seconds."""

    def __init__(self, app: App, ttl: float) -> None:
        self.app = app
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ApiToken | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, secret: str) -> ApiToken | None:
        key = hash_token(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        tok = self.app.state.resolve_token(secret)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + self.ttl, tok)
        return tok

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


class Runtime:
    def __init__(self, app: App | None = None, settings: ServerSettings | None = None) -> None:
        self.app = app or App()
        self.settings = settings or ServerSettings.from_env()
        self.instance = new_id("srv")
        self.engine_settings = EngineSettings()
        self.metrics = ServerMetrics()
        self.feed = ChangeFeed()
        self.tokens = TokenCache(self.app, self.settings.token_cache_s)
        self.workers = WorkerPool(self, self.settings.workers)
        self._dispatch = None               # scale-out: publishes jobs to the broker (vigil.server.broker)
        self.services = Services(self.app, Hooks(
            enqueued=self.enqueued, touch=self.feed.touch, cancel_running=self._stop_running,
            sources_changed=self.sources_changed, tokens_changed=self.tokens.clear,
            alerted=lambda outcomes, alerts, actor: self.alert_notes.add(outcomes, alerts, actor),
            outbox=self._wake_respond, queue=True),
            engine_settings=self.engine_settings, max_attempts=self.settings.max_attempts,
            webhook_settings=self.settings, session_store=self._session_store())
        self.app.services = self.services
        self._respond = None
        self._outbox = None
        self.alert_notes = AlertNotes(self._note, self.settings.alert_note_interval_s)
        self._jobs = None
        self.admission = Admission(self.settings.ingest_per_space, self.settings.ingest_total,
                                   self.settings.ingest_queue, self.settings.ingest_wait_s)
        self.started = False

    def _note(self, inv_id: str, kind: JournalKind, message: str, **kw) -> None:
        self.state.append_journal(inv_id, kind, message, **kw)
        self.feed.touch(inv_id)

    @property
    def state(self):
        return self.app.state

    @property
    def telemetry(self):
        return self.app.telemetry

    @property
    def respond(self):
        """Respond and prevent: mitigation specs, actions, notifications, chat (``vigil.respond``)."""
        return self.services.respond

    def _wake_respond(self) -> None:
        for loop in (self._outbox, self._jobs):
            if loop is not None:
                loop.wake()

    @property
    def dispatch(self):
        """Scale-out mode only: the broker publisher (``vigil.server.broker.Dispatch``)."""
        if self._dispatch is None:
            from vigil.server.broker import Dispatch
            self._dispatch = Dispatch(self)
        return self._dispatch

    def _session_store(self):
        """Console sessions every replica shares (scale-out mode), else this process's."""
        if self.settings.scaleout:
            from vigil.store.sessions import DbSessionStore
            return DbSessionStore(self.state)
        return None

    def _stop_running(self, inv_id: str) -> bool:
        """Stop a running investigation at its next step: this process's worker, or (scale-out) the
        ``vigil worker`` holding it, at its next lease renewal. False when none holds it."""
        if self.workers.cancel_running(inv_id):
            return True
        return self.settings.scaleout and self.state.request_cancel(inv_id)

    def enqueued(self, inv_ids: list[str]) -> None:
        """Jobs were committed to the queue: wake the local workers, or (scale-out) publish one
        message per job for the ``vigil worker`` processes."""
        if self.settings.scaleout:
            self.dispatch.publish([i for i in inv_ids if i])
        else:
            self.workers.wake()

    @property
    def ingest(self) -> OtlpIngest:
        return self.services.ingest.pipeline

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.started:
            return
        _ = self.state, self.telemetry          # open both (migrations run) before taking traffic
        self.metrics.watch_state(self.state, self.workers)
        if self.settings.scaleout:
            # investigations run on `vigil worker` processes; jobs of a replica that died before
            # publishing them are published by the workers' sweep, never recovered here (a live
            # worker may be running them)
            _ = self.dispatch
        else:
            self.workers.start()
        from vigil.respond.notify.dispatch import Dispatcher
        self._outbox = Dispatcher(self.respond, interval_s=self.settings.outbox_interval_s,
                                  backoff_s=self.settings.outbox_backoff_s)
        self._outbox.start()
        from vigil.respond.jobs import Jobs
        self._jobs = Jobs(self.respond, interval_s=self.settings.outbox_interval_s)   # queued actions, checks
        self._jobs.start()
        self.started = True

    def stop(self) -> None:
        self.alert_notes.stop()
        if self.started:
            if not self.settings.scaleout:
                self.workers.stop()
            for loop in (self._outbox, self._jobs):
                if loop is not None:
                    loop.stop()
            self.started = False
        if self._dispatch is not None:
            self._dispatch.close()
        self.app.close()

    def ready(self) -> dict[str, str]:
        checks = {}
        try:
            self.state.queue_depth()
            checks["state"] = "ok"
        except Exception as exc:
            checks["state"] = f"error: {type(exc).__name__}"
        try:
            self.telemetry.baselines("_")       # a query on the smallest table: the store answers
            checks["telemetry"] = "ok"
        except Exception as exc:
            checks["telemetry"] = f"error: {type(exc).__name__}"
        if self.settings.scaleout:
            try:
                self.dispatch.ping()
                checks["broker"] = "ok"
            except Exception as exc:
                checks["broker"] = f"error: {type(exc).__name__}"
            return checks
        checks["workers"] = "ok" if self.workers.alive() == self.workers.size else \
            f"{self.workers.alive()} of {self.workers.size} alive"
        return checks

    # -- sources --------------------------------------------------------------------------------
    def resource_key(self, space: str) -> str:
        """Which OTLP resource attribute names a resource in this space (``IngestService``)."""
        return self.services.ingest.resource_key(space)

    def sources_changed(self, space: str) -> None:
        self.services.ingest.forget(space)
        self.app.sources.invalidate(space)

    # -- alerts ---------------------------------------------------------------------------------
    def accept_alerts(self, space: str, alerts: list[IncomingAlert], actor: str) -> list[AlertOutcome]:
        """Durably record delivered alerts (``AlertService.accept``) and count them."""
        outcomes = self.services.alerts.accept(space, alerts, actor)
        for o in outcomes:
            self.metrics.alerts.labels(o.outcome).inc()
        return outcomes

    # -- investigations (the services' single paths, kept here for the worker and older callers) ------
    def start_manual(self, space: str, point: StartingPoint, start: datetime | None, end: datetime | None,
                     at: datetime | None, text: str, actor: str) -> Investigation:
        return self.services.investigations.start_manual(space, point, start, end, at, text, actor)

    def start_linked(self, space: str, parent: Investigation, steering, actor: str) -> Investigation:
        return self.services.investigations.start_linked(space, parent, steering, actor)

    def cancel(self, space: str, inv_id: str, actor: str) -> Investigation:
        return self.services.investigations.cancel(space, inv_id, actor)

    def judge(self, space: str, inv_id: str, hyp_id: str, actor: str, state: HypothesisState | None,
              note: str | None) -> Hypothesis:
        return self.services.investigations.judge(space, inv_id, hyp_id, actor, state, note)
