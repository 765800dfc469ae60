"""Scale-out mode: investigations as Celery tasks on a broker (RabbitMQ or Redis, ``VIGIL_BROKER_URL``),
run by any number of ``vigil worker`` processes on any hosts, while any number of ``vigil serve``
replicas take alerts, telemetry and people's requests. Without a broker none of this is used: ``vigil
serve`` runs investigations on its own worker pool (``vigil.server.worker``).

The state database stays the source of truth: an investigation and its job are committed first, then
a message naming the job is published (``Dispatch``). A message is only a wake-up call for one job:

- A worker takes the job with a lease (``StateStore.lease_job``) and renews it every ``lease/5`` s while
  the run goes on; the run is the embedded pool's own (``WorkerPool.run_one``: time budget, analyst
  process, first answers first).
- Messages are acknowledged late (``acks_late``, ``reject_on_worker_lost``): only when the task returns,
  that is after the run's result, its status and its job are committed. A worker killed mid-run (even
  ``kill -9``) never acknowledges; the broker delivers the message again, and the worker that gets it
  waits until the dead worker's lease has lapsed, then takes the job over.
- A taken-over run starts again, but its journal is not written twice: every entry a run writes
  carries its step (``p3``: third entry of the first pass, ``f2``: of the full analysis after a
  preliminary answer), and a step already in the journal is not appended again (``append_journal(step=)``).
  The journal says which worker stopped and which attempt resumed.
- Each worker also sweeps (``Sweeper``): a job committed but never published (a replica died between
  the two, or the broker was away) and a job whose lease lapsed without a redelivery (Redis redelivers
  only after its visibility timeout) are published again. A duplicate message is harmless: a job is
  taken by one worker at a time and a finished one is not run again.
- Cancelling a job that runs elsewhere sets ``cancel_requested`` on it; its worker sees it at its next
  lease renewal."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vigil.errors import VigilError

if TYPE_CHECKING:
    from celery import Celery

    from vigil.server.runtime import Runtime

log = logging.getLogger("vigil.server")

TASK = "vigil.investigate"


def make_celery(url: str, queue: str = "vigil.investigations") -> Celery:
    try:
        from celery import Celery
    except ImportError:     # pragma: no cover - celery is a dependency
        raise VigilError("scale-out mode needs the celery package (pip install celery[redis])") from None
    if not url.startswith(("amqp://", "amqps://", "pyamqp://", "redis://", "rediss://")):
        raise VigilError("VIGIL_BROKER_URL must be an amqp:// (RabbitMQ) or redis:// URL")
    app = Celery("vigil", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,                   # acknowledged when the task returns: after its result is committed
        task_reject_on_worker_lost=True,       # a worker that dies mid-task hands the message back
        task_acks_on_failure_or_timeout=True,  # an error is recorded in the journal: no redelivery loop
        worker_prefetch_multiplier=1,          # a worker holds no more messages than it runs
        task_default_queue=queue,
        task_ignore_result=True,               # results live in the state database
        task_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3.0,
        # Redis: an unacknowledged message comes back after this; the sweeper takes over before that
        broker_transport_options={"visibility_timeout": 3600, "max_retries": 2, "interval_start": 0,
                                  "interval_step": 0.5, "interval_max": 1.0},
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                   "interval_max": 1.0},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )

    @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def investigate(self, inv_id: str) -> str:
        worker = getattr(self.app, "vigil_worker", None)
        if worker is None:
            raise VigilError("this process is not a vigil worker")
        return worker.run_task(inv_id, bool((self.request.delivery_info or {}).get("redelivered")))

    return app


class Dispatch:
    """Publishes one message per job (serve replicas and workers alike). A publish that fails is
    logged and left to the workers' sweep: the job is already committed."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.queue = runtime.settings.broker_queue
        self.celery = make_celery(runtime.settings.broker_url, self.queue)
        self._lock = threading.Lock()

    def publish(self, inv_ids: list[str]) -> int:
        if not inv_ids:
            return 0
        due = self.rt.state.jobs_not_before(inv_ids)
        return self.publish_due([(i, due.get(i)) for i in inv_ids if i in due])

    def publish_due(self, items: list[tuple[str, datetime | None]]) -> int:
        sent: list[str] = []
        now = datetime.now(UTC)
        try:
            with self._lock, self.celery.producer_or_acquire() as producer:
                for inv_id, not_before in items:
                    countdown = max(0.0, (not_before - now).total_seconds()) if not_before else None
                    self.celery.send_task(TASK, args=[inv_id], queue=self.queue, countdown=countdown or None,
                                          producer=producer, retry=True)
                    sent.append(inv_id)
        except Exception as exc:   # noqa: BLE001 - the broker is away: the sweep publishes it later
            log.warning("could not publish %d investigation(s) to the broker (%s); a worker's sweep will",
                        len(items) - len(sent), type(exc).__name__)
        if sent:
            try:
                self.rt.state.mark_dispatched(sent)
            except Exception as exc:   # noqa: BLE001 - at worst the sweep publishes a duplicate
                log.warning("could not mark jobs dispatched: %s", type(exc).__name__)
        return len(sent)

    def ping(self, timeout: float = 2.0) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    def close(self) -> None:
        try:
            self.celery.close()
        except Exception:   # noqa: BLE001
            pass


class Lease:
    """A worker's hold on one running job: renewed in the background; ``lost`` when another worker
    took the job over (this one was silent too long) - from then on the run writes nothing."""

    def __init__(self, runtime: Runtime, inv_id: str, owner: str, phase: str) -> None:
        self.rt, self.inv_id, self.owner, self.phase = runtime, inv_id, owner, phase
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"vigil-lease-{inv_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _renew(self) -> None:
        every = max(0.5, self.rt.settings.job_lease_s / 5.0)
        while not self._stop.wait(every):
            try:
                ours, cancel = self.rt.state.renew_lease(self.inv_id, self.owner)
            except Exception as exc:   # noqa: BLE001 - the database is away: the lease may lapse
                log.warning("could not renew the lease on %s: %s", self.inv_id, type(exc).__name__)
                continue
            if not ours:
                log.warning("lost the lease on %s: another worker took it over", self.inv_id)
                self.lost.set()
                self.rt.workers.cancel_running(self.inv_id)
                return
            if cancel:
                self.rt.workers.cancel_running(self.inv_id)


class BrokerWorker:
    """What a ``vigil worker`` process does with each message (see the module's doc)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._local = threading.local()
        self._analysts: list = []
        self._lock = threading.Lock()

    def _analyst(self):
        if self.rt.settings.analysis != "process":
            return None
        a = getattr(self._local, "analyst", None)
        if a is None:
            from vigil.server.analyst import Analyst
            a = Analyst()
            try:
                a.start()
            except OSError as exc:
                log.error("cannot start an analyst process (%s); analysing in the worker thread", type(exc).__name__)
                return None
            self._local.analyst = a
            with self._lock:
                self._analysts.append(a)
        return a

    def close(self) -> None:
        with self._lock:
            for a in self._analysts:
                a.stop()
            self._analysts.clear()

    def run_task(self, inv_id: str, redelivered: bool) -> str:
        st, lease_s = self.rt.state, self.rt.settings.job_lease_s
        waited_until = time.monotonic() + lease_s + 5.0
        while True:
            try:
                what, seconds = st.lease_job(inv_id, self.owner, lease_s)
            except Exception as exc:    # noqa: BLE001 - the state database is away: hand the message back
                from celery.exceptions import Reject
                log.warning("cannot take job %s (%s); the message goes back to the broker", inv_id,
                            type(exc).__name__)
                time.sleep(2.0)
                raise Reject(f"state database unavailable: {type(exc).__name__}", requeue=True) from None
            if what in ("claimed", "taken-over"):
                break
            if what == "busy" and redelivered and time.monotonic() < waited_until:
                # the broker gave this message back: its worker died; wait for its lease to lapse
                time.sleep(min(1.0, max(0.1, seconds)))
                continue
            if what == "early":
                if seconds <= 2.0:
                    time.sleep(seconds)
                    continue
                self.rt.dispatch.publish([inv_id])      # not due yet (clocks differ): come back then
            return what
        phase = "f" if st.get_investigation(inv_id).status.value == "running" else "p"
        with Lease(self.rt, inv_id, self.owner, phase) as lease:
            self.rt.workers.run_one(inv_id, self._analyst(), lease=lease)
        return what


class Sweeper:
    """Publishes jobs that have no message (see the module's doc), every ``lease/3`` seconds."""

    def __init__(self, runtime: Runtime, grace_s: float = 10.0) -> None:
        self.rt = runtime
        self.grace_s = grace_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vigil-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def sweep(self) -> int:
        items = self.rt.state.jobs_to_dispatch(self.grace_s, self.rt.settings.job_lease_s)
        if items:
            log.warning("publishing %d investigation(s) with no live message (lost publish or dead worker)",
                        len(items))
        return self.rt.dispatch.publish_due(items) if items else 0

    def _loop(self) -> None:
        every = max(1.0, self.rt.settings.job_lease_s / 3.0)
        while not self._stop.wait(every):
            try:
                self.sweep()
            except Exception as exc:   # noqa: BLE001 - the database or broker is away: next round
                log.warning("sweep failed: %s", type(exc).__name__)


def run_worker(runtime: Runtime, concurrency: int, loglevel: str = "WARNING") -> None:
    """Run a Celery worker (threads) in this process until it is stopped (SIGTERM/SIGINT: warm shutdown)."""
    celery = runtime.dispatch.celery
    celery.vigil_worker = worker = BrokerWorker(runtime)
    sweeper = Sweeper(runtime)
    sweeper.start()
    try:
        celery.worker_main([
            "--quiet", "worker", "--pool=threads", f"--concurrency={max(1, concurrency)}", f"--loglevel={loglevel}",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", runtime.dispatch.queue,
            "-n", f"vigil-{os.getpid()}@{socket.gethostname()}", "--prefetch-multiplier=1"])
    finally:
        sweeper.stop()
        worker.close()
        celery.vigil_worker = None
