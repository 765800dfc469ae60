"""The worker pool: runs queued investigations from the durable queue with a time budget.

An investigation is ``vigil.agent.Investigator(state, sources, preliminary=True).run(inv)``. The state
store it is handed is wrapped so that every journal step (a) wakes the live streams and (b) checks
the time budget and cancellation: past either, the next step raises and the investigator records
the failure in the journal as it does for any error. The budget is therefore checked between steps.

By default each worker thread runs the analysis in its own analyst process (``vigil.server.analyst``):
the workers then use every core, and an engine pass that overstays the budget by a grace period is
stopped by killing that process. ``VIGIL_ANALYSIS=thread`` runs it in the worker thread instead.

First answers first: a run publishes a preliminary ranking (``analyze(quick=True)``), and when
investigations of the same burst (arrived within ``first_answer_window_s``) are waiting to start, it
hands its worker back and is queued again behind them for the full analysis: an alert storm gets every
first answer before any full analysis, and later arrivals cannot starve a full analysis for longer."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vigil.agent import Investigator
from vigil.errors import NotFound, VigilError
from vigil.model import Hypothesis, InvestigationStatus, JournalKind
from vigil.server.analyst import Analyst, AnalystDied

if TYPE_CHECKING:
    from vigil.server.runtime import Runtime

log = logging.getLogger("vigil.server")


class BudgetExceeded(VigilError):
    pass


class Cancelled(VigilError):
    pass


class GuardedState:
    """The state store as one investigation run sees it (everything else passes through)."""

    def __init__(self, runtime: Runtime, inv_id: str, budget_s: float, cancel: threading.Event,
                 lease: Any = None) -> None:
        self._rt = runtime
        self._state = runtime.state
        self._inv_id = inv_id
        self._budget_s = budget_s
        self._deadline = time.monotonic() + budget_s
        self._cancel = cancel
        # scale-out (``vigil.server.broker.Lease``): entries carry their step, so a run taken over from a
        # dead worker writes each step once; a run whose lease another worker took writes nothing more
        self._lease = lease
        self._steps = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    @property
    def fenced(self) -> bool:
        return self._lease is not None and self._lease.lost.is_set()

    def _check(self) -> None:
        if self.fenced:
            raise Cancelled("another worker took this investigation over")
        if self._cancel.is_set():
            raise Cancelled("cancelled by an operator")
        if time.monotonic() > self._deadline:
            raise BudgetExceeded(f"time budget of {self._budget_s:g} s exceeded")

    def append_journal(self, inv_id: str, kind: JournalKind, message: str, **kw: Any):
        if kind not in (JournalKind.ERROR, JournalKind.CONCLUSION):
            self._check()
        if self._lease is not None:
            if self.fenced:
                raise Cancelled("another worker took this investigation over")
            self._steps += 1
            kw = {**kw, "step": f"{self._lease.phase}{self._steps}"}
        entry = self._state.append_journal(inv_id, kind, message, **kw)
        self._rt.feed.touch(inv_id)
        return entry

    def replace_hypotheses(self, inv_id: str, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        if self.fenced:
            raise Cancelled("another worker took this investigation over")
        out = self._state.replace_hypotheses(inv_id, hypotheses)
        self._rt.feed.touch(inv_id)
        return out

    def others_waiting(self, inv_id: str) -> bool:
        return self._state.others_waiting(inv_id, self._rt.settings.first_answer_window_s)

    def set_status(self, inv_id: str, status: InvestigationStatus, summary: str | None = None,
                   error: str | None = None):
        current = self._state.get_investigation(inv_id)
        if self.fenced:
            return current
        if current.status.finished:          # cancelled from outside meanwhile: keep that
            return current
        if status is InvestigationStatus.FAILED and self._cancel.is_set():
            status = InvestigationStatus.CANCELLED
        out = self._state.set_status(inv_id, status, summary=summary, error=error, finish_job=True)
        self._rt.feed.touch(inv_id)
        return out


class WorkerPool:
    def __init__(self, runtime: Runtime, size: int) -> None:
        self.rt = runtime
        self.size = max(1, size)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for inv_id, what in self.rt.state.recover_jobs():
            log.warning("recovered investigation %s after a restart: %s", inv_id, what)
            self.rt.feed.touch(inv_id)
        for i in range(self.size):
            t = threading.Thread(target=self._loop, args=(i,), name=f"vigil-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more jobs; give running ones ``timeout`` to finish. One still running after that is
        left as a crash would leave it: the next start queues it again."""
        self._stop.set()
        self.wake(all_=True)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def wake(self, all_: bool = False) -> None:
        with self._wake:
            self._wake.notify_all() if all_ else self._wake.notify(self.size)

    def cancel_running(self, inv_id: str) -> bool:
        with self._lock:
            ev = self._cancels.get(inv_id)
        if ev is None:
            return False
        ev.set()
        return True

    def _fail(self, inv_id: str, error: str, cancelled: bool, lease: Any = None) -> None:
        """Record a failure the investigator did not (one raised before its own error handling)."""
        st = self.rt.state
        if (lease is not None and lease.lost.is_set()) or st.get_investigation(inv_id).status.finished:
            return
        st.append_journal(inv_id, JournalKind.ERROR, f"investigation failed: {error}", source="server")
        status = InvestigationStatus.CANCELLED if cancelled else InvestigationStatus.FAILED
        try:
            st.set_status(inv_id, status, error=error, finish_job=True)
        except VigilError:          # QUEUED cannot fail directly
            st.set_status(inv_id, InvestigationStatus.CANCELLED, error=error, finish_job=True)
        self.rt.feed.touch(inv_id)

    # -- the loop -------------------------------------------------------------------------------
    def _loop(self, index: int) -> None:
        analyst = None
        if self.rt.settings.analysis == "process":
            analyst = Analyst()
            try:
                analyst.start()             # warm: the first investigation does not pay for the start
            except OSError as exc:
                log.error("cannot start an analyst process (%s); running analyses in the worker thread",
                          type(exc).__name__)
                analyst = None
        try:
            self._work(analyst)
        finally:
            if analyst is not None:
                analyst.stop()

    def _work(self, analyst: Analyst | None) -> None:
        while not self._stop.is_set():
            try:
                inv_id = self.rt.state.claim_job(self.rt.instance)
            except Exception as exc:        # the state database is away: wait and try again
                log.error("cannot read the investigation queue: %s", type(exc).__name__)
                inv_id = None
                time.sleep(1.0)
            if inv_id is None:
                timeout = 1.0
                try:        # a job waiting to settle: wake when it may run
                    nxt = self.rt.state.next_job_at()
                    if nxt is not None:
                        timeout = min(1.0, max(0.05, (nxt - datetime.now(UTC)).total_seconds()))
                except Exception:
                    pass
                with self._wake:
                    self._wake.wait(timeout=timeout)
                continue
            self.run_one(inv_id, analyst)

    def run_one(self, inv_id: str, analyst: Analyst | None = None, lease: Any = None) -> None:
        """Run one claimed job. ``lease``: scale-out (``vigil.server.broker.Lease``), see ``GuardedState``."""
        st = self.rt.state
        try:
            inv = st.get_investigation(inv_id)
        except NotFound:
            st.finish_job(inv_id, error="investigation deleted")
            return
        if inv.status.finished:
            st.finish_job(inv_id)
            return
        try:
            budget = st.get_space(inv.space_id).policies.investigation_budget_s
        except NotFound:
            budget = 120.0
        cancel = threading.Event()
        with self._lock:
            self._cancels[inv_id] = cancel
        t0 = time.perf_counter()
        error = ""
        try:
            guarded = GuardedState(self.rt, inv_id, budget, cancel, lease)
            if analyst is None:
                Investigator(guarded, self.rt.app.sources, self.rt.engine_settings,  # type: ignore[arg-type]
                             preliminary=True, learn_topology=True).run(inv)
            else:
                hard_stop = time.monotonic() + budget + max(5.0, 0.25 * budget)
                error = analyst.run(inv, guarded, self.rt.app.sources, hard_stop, cancel.is_set) or ""
                if error:
                    self._fail(inv_id, error, cancel.is_set(), lease)
        except AnalystDied as exc:
            error = str(exc)
            self._fail(inv_id, error, cancel.is_set(), lease)
        except Exception as exc:            # usually already journaled and marked failed by the investigator
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._fail(inv_id, error, cancel.is_set(), lease)
        finally:
            with self._lock:
                self._cancels.pop(inv_id, None)
        if lease is not None and lease.lost.is_set():
            return                          # the worker that took it over finishes it
        if not error and not cancel.is_set() and st.get_investigation(inv_id).status is InvestigationStatus.RUNNING:
            # it gave its preliminary ranking and handed the worker to a waiting investigation: the
            # full analysis runs when its turn comes again
            st.requeue_job(inv_id, self.rt.settings.first_answer_window_s)
            self.rt.feed.touch(inv_id)
            self.rt.enqueued([inv_id])
            return
        st.finish_job(inv_id, error=error)
        self.rt.metrics.duration.observe(time.perf_counter() - t0)
        try:
            self.rt.metrics.finished.labels(st.get_investigation(inv_id).status.value).inc()
        except NotFound:
            pass
        self.rt.feed.touch(inv_id)
