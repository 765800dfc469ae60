"""A background thread that does one round of work every ``interval_s`` (sooner when woken), and keeps
going when a round fails (the state database away: try again next round). The outbox and the respond
jobs both run on it.

A failing round is logged with its traceback once; while the same error repeats, each round logs one
line with the count, and the first round that succeeds again says how many failed."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("vigil.respond")


class Rounds:
    thread_name = "vigil-rounds"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._round()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    _failed = 0
    _last_error: tuple[type, str] | None = None

    def _round(self) -> None:
        try:
            self.tick()
        except Exception as e:    # noqa: BLE001 - the state database away: try again next round
            self._failed += 1
            error = (type(e), str(e).splitlines()[0] if str(e) else "")
            if error != self._last_error:
                log.exception("%s round failed", self.thread_name)
            else:
                log.warning("%s round failed again (%d in a row): %s: %s", self.thread_name, self._failed,
                            error[0].__name__, error[1])
            self._last_error = error
            return
        if self._failed:
            log.warning("%s rounds work again after %d failed", self.thread_name, self._failed)
        self._failed, self._last_error = 0, None
