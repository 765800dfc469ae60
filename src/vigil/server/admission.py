"""Per-space admission for ingest work (alert deliveries and OTLP exports), so that one space's storm
cannot stall another space's API.

The work of a delivery (parsing, verifying, recording the alerts) runs in the server's thread pool, which
every synchronous API endpoint shares. Without a limit, one space sending many large deliveries at once
fills that pool (and, on PostgreSQL, most of its deliveries only wait there for the space's row lock), so
another space's requests queue behind them. Here a space runs at most ``per_space`` ingest jobs at once
and all spaces together at most ``total``; the others wait on the event loop, holding no thread, in
arrival order. At most ``queue`` may wait per space, and none longer than ``wait_s``: past either the
delivery is answered ``503`` with ``Retry-After`` (Alertmanager, Grafana, PagerDuty and SNS retry a 5xx),
and nothing of it was written.

The limits are per server process (each replica admits its own share)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Busy(Exception):
    """The space has too much ingest work waiting: answer 503 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    def __init__(self, per_space: int = 2, total: int = 8, queue: int = 64, wait_s: float = 30.0) -> None:
        self.per_space = max(1, per_space)
        self.total = max(1, total)
        self.queue = max(0, queue)
        self.wait_s = wait_s
        self._spaces: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self._all: asyncio.Semaphore | None = None
        self.rejected = 0

    def waiting(self, space: str) -> int:
        return self._waiting.get(space, 0)

    @asynccontextmanager
    async def slot(self, space: str) -> AsyncIterator[None]:
        """Hold one of the space's ingest slots (and one of all spaces') while the body runs."""
        if self._all is None:
            self._all = asyncio.Semaphore(self.total)
        mine = self._spaces.get(space)
        if mine is None:
            mine = self._spaces[space] = asyncio.Semaphore(self.per_space)
        if mine.locked() and self._waiting.get(space, 0) >= self.queue:
            self.rejected += 1
            raise Busy(f"too many deliveries waiting for this space ({self.queue}); retry later", 5)
        self._waiting[space] = self._waiting.get(space, 0) + 1
        got_mine = False
        try:
            async with asyncio.timeout(self.wait_s):
                await mine.acquire()
                got_mine = True
                await self._all.acquire()
        except TimeoutError:
            if got_mine:
                mine.release()
            self.rejected += 1
            raise Busy(f"this space's deliveries waited more than {self.wait_s:g} s; retry later", 10) from None
        except BaseException:
            if got_mine:
                mine.release()
            raise
        finally:
            self._waiting[space] -= 1
            if not self._waiting[space]:
                del self._waiting[space]
        try:
            yield
        finally:
            self._all.release()
            mine.release()
            if space not in self._waiting and mine._value == self.per_space:
                self._spaces.pop(space, None)          # idle: forgotten (one event loop: no race)
