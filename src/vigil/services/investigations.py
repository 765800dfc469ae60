"""Investigations: the one path every start takes (an alert, a manual starting point, a steered rerun,
the CLI, ``vigil mcp``), cancel, judge a hypothesis, and the reads the interfaces show. Each action writes
its change, its journal entry and its audit entry in one transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from vigil.errors import InputError, NotFound
from vigil.model import (
    Alert,
    Hypothesis,
    HypothesisState,
    Investigation,
    InvestigationStatus,
    JournalEntry,
    JournalKind,
    StartingPoint,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.report import ReportData, render
from vigil.services.hooks import Hooks
from vigil.services.starting import plan_start


class InvestigationService:
    def __init__(self, app: Any, hooks: Hooks, engine_settings: Any = None, max_attempts: int = 3) -> None:
        self.app = app
        self.hooks = hooks
        self._engine_settings = engine_settings
        self.max_attempts = max_attempts

    @property
    def store(self) -> Any:
        return self.app.state

    @property
    def engine_settings(self) -> Any:
        if self._engine_settings is None:
            from vigil.engine import Settings
            self._engine_settings = Settings()
        return self._engine_settings

    # -- the one start path --------------------------------------------------------------------
    def create_in(self, u: Any, space: str, trigger: Trigger, window: Window, *, note: JournalEntry | None = None,
                  not_before: datetime | None = None, queue: bool = True,
                  audit: tuple[str, dict[str, Any]] | None = None) -> Investigation:
        """Record an investigation inside the caller's unit of work: its first journal note, its job in
        the durable queue (``queue``; to run no earlier than ``not_before``) and, with ``audit`` (actor,
        detail), its audit entry. Every start goes through here."""
        u.spaces.get(space)
        inv = u.investigations.add(space, trigger, window, note)
        if queue:
            u.jobs.enqueue(inv.id, space, inv.created_at, self.max_attempts, not_before)
        if audit is not None:
            actor, detail = audit
            u.audit.add(actor, "investigate", space, inv.id, detail)
        return inv

    def start(self, space: str, trigger: Trigger, window: Window, actor: str, *, note: JournalEntry | None = None,
              not_before: datetime | None = None, queue: bool = True,
              detail: dict[str, Any] | None = None) -> Investigation:
        """Start an investigation: recorded, queued (``queue``) and audited in one transaction; the
        workers are woken once it has committed."""
        with self.store.uow() as u:
            inv = self.create_in(u, space, trigger, window, note=note, not_before=not_before, queue=queue,
                                 audit=(actor, detail or {}))
        if queue:
            self.hooks.enqueued([inv.id])
        return inv

    def start_manual(self, space: str, point: StartingPoint, start: datetime | None, end: datetime | None,
                     at: datetime | None, text: str, actor: str) -> Investigation:
        """A start by hand from a starting point inside a window (the window rules and the search are
        ``services.starting``), queued for the workers."""
        return self.plan_and_start(space, point, start, end, at, text, actor)[0]

    def plan_and_start(self, space: str, point: StartingPoint, start: datetime | None, end: datetime | None,
                       at: datetime | None, text: str, actor: str, *, queue: bool = True,
                       extra: dict[str, Any] | None = None) -> tuple[Investigation, datetime | None]:
        """``start_manual``, also for a caller that runs the investigation itself (``queue=False``):
        returns it and when it may run (the settle wait; None for now)."""
        plan = plan_start(self._space, self._latest_alert, self.app.sources, self.engine_settings, space,
                          point, start, end, at, text, actor, extra=extra)
        inv = self.start(space, plan.trigger, plan.window, actor, note=plan.note, not_before=plan.wait, queue=queue,
                         detail={"starting_point": point.value})
        return inv, plan.wait

    def start_at(self, space: str, onset: datetime, actor: str, alert: Alert | None = None,
                 text: str = "") -> Investigation:
        """A start at a given onset (the CLI's ``--at``, ``--alert``, ``--latest``), not queued: the caller
        runs it."""
        s = self.engine_settings
        window = Window.around(onset, timedelta(seconds=s.metric_lookback_s), timedelta(seconds=s.after_s))
        trigger = Trigger(kind=TriggerKind.ALERT if alert else TriggerKind.MANUAL, alert=alert, text=text)
        return self.start(space, trigger, window, actor, queue=False)

    def start_linked(self, space: str, parent: Investigation, steering: Any, actor: str) -> Investigation:
        """A steered rerun of ``parent`` (same window and alert), queued now; its journal says so."""
        trigger = parent.trigger.model_copy(update={"steering": steering,
                                                    "text": f"rerun of {parent.id}" + (f": {parent.trigger.text}"
                                                                                      if parent.trigger.text else "")})
        note = JournalEntry(investigation_id="", seq=0, kind=JournalKind.NOTE,
                            message=f"a rerun of {parent.id} started by {actor}", source=actor,
                            data={"steering": steering.model_dump(mode="json")})
        return self.start(space, trigger, parent.window, actor, note=note,
                          detail={"rerun_of": parent.id, "steering": steering.model_dump(mode="json")})

    def _space(self, space: str) -> Any:
        with self.store.read() as u:
            return u.spaces.get(space)

    def _latest_alert(self, space: str, start: datetime, end: datetime) -> Alert | None:
        with self.store.read() as u:
            return u.alerts.latest_alert(space, start, end)

    # -- operator actions ----------------------------------------------------------------------
    def cancel(self, space: str, inv_id: str, actor: str) -> Investigation:
        """Cancel: the request journaled and audited with the change; a queued investigation ends here, a
        running one at its worker's next step."""

        def work(u: Any) -> bool:
            inv = u.investigations.get(inv_id, space, lock=True)
            if inv.status.finished:
                raise InputError(f"investigation {inv_id} already finished ({inv.status.value})")
            u.investigations.append(inv_id, JournalKind.NOTE, f"cancel requested by {actor}", source=actor)
            u.audit.add(actor, "cancel", space, inv_id)
            if inv.status is InvestigationStatus.QUEUED:
                u.investigations.set_status(inv_id, InvestigationStatus.CANCELLED, error=f"cancelled by {actor}",
                                            finish_job=True)
                return True
            return False

        ended = self.store.atomic(work)
        if not ended and not self.hooks.cancel_running(inv_id):
            # running but between passes (its preliminary answer given, its job queued for the full
            # analysis), or on another process's worker: end it here
            with self.store.uow() as u:
                u.investigations.set_status(inv_id, InvestigationStatus.CANCELLED, error=f"cancelled by {actor}",
                                            finish_job=True)
        self.hooks.touch(inv_id)
        return self.get(space, inv_id)

    def judge(self, space: str, inv_id: str, hyp_id: str, actor: str, state: HypothesisState | None,
              note: str | None) -> Hypothesis:
        """Accept or discard a hypothesis (or note on it): the judgement, its journal entry and its audit
        entry in one transaction."""

        def work(u: Any) -> Hypothesis:
            u.investigations.get(inv_id, space)
            hyp = next((h for h in u.investigations.hypotheses(inv_id) if h.id == hyp_id), None)
            if hyp is None:
                raise NotFound(f"no hypothesis {hyp_id!r} in investigation {inv_id!r}")
            out = u.investigations.judge(hyp_id, state, note=note, space_id=space)
            what = f"{state.value} hypothesis #{hyp.rank} ({hyp.resource}, {hyp.fault_kind.value})" if state else \
                f"noted on hypothesis #{hyp.rank} ({hyp.resource})"
            u.investigations.append(inv_id, JournalKind.NOTE, f"{actor} {what}" + (f": {note}" if note else ""),
                                    source=actor, data={"hypothesis": hyp_id,
                                                        **({"state": state.value} if state else {})})
            u.audit.add(actor, f"hypothesis-{state.value if state else 'note'}", space, hyp_id)
            return out

        out = self.store.atomic(work)
        self.hooks.touch(inv_id)
        return out

    def run_here(self, inv: Investigation) -> Any:
        """Run a started investigation in this process (no queue: the CLI, ``vigil mcp`` over stdio)."""
        from vigil.agent import Investigator
        return Investigator(self.store, self.app.sources, self.engine_settings).run(inv)

    def abandon(self, inv_id: str, reason: str) -> Investigation:
        """Cancel an investigation that will not run (its process is stopping)."""
        with self.store.uow() as u:
            inv = u.investigations.set_status(inv_id, InvestigationStatus.CANCELLED, error=reason, finish_job=True)
        self.hooks.touch(inv_id)
        return inv

    # -- reads ---------------------------------------------------------------------------------
    def get(self, space: str, inv_id: str) -> Investigation:
        with self.store.read() as u:
            return u.investigations.get(inv_id, space)

    def list(self, space: str, status: InvestigationStatus | None = None, limit: int = 50,
             offset: int = 0) -> list[Investigation]:
        with self.store.read() as u:
            return u.investigations.list(space, status, limit, offset)

    def with_job(self, space: str, inv_id: str) -> tuple[Investigation, dict[str, Any] | None]:
        with self.store.read() as u:
            return u.investigations.get(inv_id, space), u.jobs.get(inv_id)

    def job(self, space: str | None, inv_id: str) -> dict[str, Any] | None:
        with self.store.read() as u:
            u.investigations.get(inv_id, space)
            return u.jobs.get(inv_id)

    def journal(self, space: str, inv_id: str, after_seq: int = 0) -> list[JournalEntry]:
        with self.store.read() as u:
            u.investigations.get(inv_id, space)
            return u.investigations.journal(inv_id, after_seq)

    def hypotheses(self, space: str, inv_id: str) -> list[Hypothesis]:
        with self.store.read() as u:
            u.investigations.get(inv_id, space)
            return u.investigations.hypotheses(inv_id)

    def snapshot(self, space: str, inv_id: str, after_seq: int = 0, hyp_sig: list[tuple] | None = None
                 ) -> tuple[Investigation, list[JournalEntry], list[tuple], list[Hypothesis] | None]:
        """What a live stream reads, in this order: the investigation (once its status reads finished, the
        journal read after it holds every step), its journal after ``after_seq``, its hypotheses'
        signature, and the hypotheses themselves only when the signature is not ``hyp_sig`` (else None)."""
        with self.store.read() as u:
            inv = u.investigations.get(inv_id, space)
            entries = u.investigations.journal(inv_id, after_seq)
            sig = u.investigations.hypotheses_signature(inv_id)
            return inv, entries, sig, (u.investigations.hypotheses(inv_id) if sig != hyp_sig else None)

    def report_data(self, space: str | None, inv_id: str) -> ReportData:
        with self.store.read() as u:
            inv = u.investigations.get(inv_id, space)
            return ReportData(inv, u.investigations.hypotheses(inv_id), u.investigations.journal(inv_id))

    def report(self, space: str | None, inv_id: str, fmt: str) -> str:
        return render(self.report_data(space, inv_id), fmt)

    def latest_findings(self, space: str, limit: int = 20) -> tuple[str | None, list[Hypothesis]]:
        """The most recent concluded investigation with hypotheses (its id and hypotheses): what the
        topology's health colours say."""
        with self.store.read() as u:
            for inv_id in u.overview.concluded_ids(space, limit):
                hyps = u.investigations.hypotheses(inv_id)
                if hyps:
                    return inv_id, hyps
        return None, []
