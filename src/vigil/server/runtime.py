"""The server process's runtime: owns the state store, the (single-process) telemetry store, the
worker pool, OTLP ingestion, the change feed and the metrics. The API layer calls only this."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from vigil.app import App
from vigil.engine import Settings as EngineSettings
from vigil.errors import InputError, NotFound
from vigil.ingest.otlp import OtlpIngest
from vigil.model import (
    AlertOutcome,
    ApiToken,
    Hypothesis,
    HypothesisState,
    IncomingAlert,
    Investigation,
    InvestigationStatus,
    JournalEntry,
    JournalKind,
    StartingPoint,
)
from vigil.server.admission import Admission
from vigil.server.alertnotes import AlertNotes
from vigil.server.feed import ChangeFeed
from vigil.server.metrics import ServerMetrics
from vigil.server.settings import ServerSettings
from vigil.server.starting import plan_start
from vigil.server.worker import WorkerPool
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
        self._sessions = None
        self._ingest: OtlpIngest | None = None
        self._source_cfg: dict[str, tuple[float, str]] = {}
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
        if self._respond is None:
            from vigil.respond.service import RespondService
            self._respond = RespondService(self.state, self.app.sources, start_linked=self.start_linked,
                                           wake=self._wake_respond,
                                           touch=self.feed.touch, judge=self.judge)
        return self._respond

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

    @property
    def sessions(self):
        """Console sessions every replica shares (scale-out mode); None: the console keeps its own."""
        if self._sessions is None and self.settings.scaleout:
            from vigil.store.sessions import DbSessionStore
            self._sessions = DbSessionStore(self.state)
        return self._sessions

    def enqueued(self, inv_ids: list[str]) -> None:
        """Jobs were committed to the queue: wake the local workers, or (scale-out) publish one
        message per job for the ``vigil worker`` processes."""
        if self.settings.scaleout:
            self.dispatch.publish([i for i in inv_ids if i])
        else:
            self.workers.wake()

    @property
    def ingest(self) -> OtlpIngest:
        if self._ingest is None:
            self._ingest = OtlpIngest(self.telemetry)
        return self._ingest

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
        """Which OTLP resource attribute names a resource in this space (an ``otlp`` source may say)."""
        now = time.monotonic()
        hit = self._source_cfg.get(space)
        if hit and hit[0] > now:
            return hit[1]
        key = "service.name"
        for src in self.state.list_sources(space):
            if src["kind"] == "otlp":
                key = str(src["config"].get("resource_attribute") or key)
        self._source_cfg[space] = (now + 5.0, key)
        return key

    def sources_changed(self, space: str) -> None:
        self._source_cfg.pop(space, None)
        self.app.sources.invalidate(space)

    # -- alerts ---------------------------------------------------------------------------------
    def accept_alerts(self, space: str, alerts: list[IncomingAlert], actor: str) -> list[AlertOutcome]:
        """Durably record delivered alerts (incidents, queued investigations) before answering."""
        s = self.engine_settings
        outcomes = self.state.accept_alerts(space, alerts, timedelta(seconds=s.metric_lookback_s),
                                            timedelta(seconds=s.after_s), max_attempts=self.settings.max_attempts)
        for o in outcomes:
            self.metrics.alerts.labels(o.outcome).inc()
        if any(o.outcome == "new-incident" for o in outcomes):
            self.enqueued([o.investigation_id for o in outcomes if o.outcome == "new-incident"])
        # a storm's alerts are summarised in the journal (counts and a sample), not one entry each
        self.alert_notes.add(outcomes, alerts, actor)
        self.state.audit(actor, "alerts", space_id=space, target=",".join(sorted({o.incident_id or "-" for o in
                                                                                  outcomes}))[:200],
                         detail={"delivered": len(alerts),
                                 "outcomes": {k: sum(1 for o in outcomes if o.outcome == k)
                                              for k in {o.outcome for o in outcomes}}})
        return outcomes

    # -- manual start ---------------------------------------------------------------------------
    def start_manual(self, space: str, point: StartingPoint, start: datetime | None, end: datetime | None,
                     at: datetime | None, text: str, actor: str) -> Investigation:
        plan = plan_start(self.state, self.app.sources, self.engine_settings, space, point, start, end, at, text,
                          actor)
        inv = self.state.create_investigation(space, plan.trigger, plan.window, enqueue=True,
                                              max_attempts=self.settings.max_attempts, note=plan.note,
                                              not_before=plan.wait)
        self.state.audit(actor, "investigate", space_id=space, target=inv.id, detail={"starting_point": point.value})
        self.enqueued([inv.id])
        return inv

    def start_linked(self, space: str, parent: Investigation, steering, actor: str) -> Investigation:
        """A steered rerun of ``parent`` (same window and alert), queued now; both journals say so."""
        trigger = parent.trigger.model_copy(update={"steering": steering,
                                                    "text": f"rerun of {parent.id}" + (f": {parent.trigger.text}"
                                                                                      if parent.trigger.text else "")})
        inv = self.state.create_investigation(space, trigger, parent.window, enqueue=True,
                                              max_attempts=self.settings.max_attempts,
                                              note=JournalEntry(investigation_id="", seq=0, kind=JournalKind.NOTE,
                                                                message=f"a rerun of {parent.id} started by {actor}",
                                                                source=actor,
                                                                data={"steering": steering.model_dump(mode="json")}))
        self.state.audit(actor, "investigate", space_id=space, target=inv.id,
                         detail={"rerun_of": parent.id, "steering": steering.model_dump(mode="json")})
        self.enqueued([inv.id])
        return inv

    # -- operator actions -----------------------------------------------------------------------
    def cancel(self, space: str, inv_id: str, actor: str) -> Investigation:
        inv = self.state.get_investigation(inv_id, space_id=space)
        if inv.status.finished:
            raise InputError(f"investigation {inv_id} already finished ({inv.status.value})")
        self.state.append_journal(inv_id, JournalKind.NOTE, f"cancel requested by {actor}", source=actor)
        if inv.status is InvestigationStatus.QUEUED:
            try:
                self.state.set_status(inv_id, InvestigationStatus.CANCELLED, error=f"cancelled by {actor}",
                                      finish_job=True)
            except InputError:          # a worker took it meanwhile: stop it at its next step
                if not self.workers.cancel_running(inv_id):
                    self.state.request_cancel(inv_id)
        elif self.settings.scaleout and self.state.request_cancel(inv_id):
            pass                        # its worker (another process) stops it at its next lease renewal
        elif not self.workers.cancel_running(inv_id):
            # running but between passes (its preliminary answer given, its job queued for the full
            # analysis): no worker holds it, so end it here
            self.state.set_status(inv_id, InvestigationStatus.CANCELLED, error=f"cancelled by {actor}",
                                  finish_job=True)
        self.state.audit(actor, "cancel", space_id=space, target=inv_id)
        self.feed.touch(inv_id)
        return self.state.get_investigation(inv_id)

    def judge(self, space: str, inv_id: str, hyp_id: str, actor: str, state: HypothesisState | None,
              note: str | None) -> Hypothesis:
        self.state.get_investigation(inv_id, space_id=space)
        hyp = next((h for h in self.state.hypotheses(inv_id) if h.id == hyp_id), None)
        if hyp is None:
            raise NotFound(f"no hypothesis {hyp_id!r} in investigation {inv_id!r}")
        out = self.state.judge_hypothesis(hyp_id, state, note=note, space_id=space)
        what = f"{state.value} hypothesis #{hyp.rank} ({hyp.resource}, {hyp.fault_kind.value})" if state else \
            f"noted on hypothesis #{hyp.rank} ({hyp.resource})"
        self.state.append_journal(inv_id, JournalKind.NOTE, f"{actor} {what}" + (f": {note}" if note else ""),
                                  source=actor, data={"hypothesis": hyp_id,
                                                      **({"state": state.value} if state else {})})
        self.state.audit(actor, f"hypothesis-{state.value if state else 'note'}", space_id=space, target=hyp_id)
        self.feed.touch(inv_id)
        return out
