"""Where an MCP tool's work happens. Two backends, one contract:

- ``RuntimeBackend`` (inside ``vigil serve`` or ``vigil mcp --transport http``): tokens resolve
  through the runtime's token cache, and a started investigation goes into the durable queue, exactly
  like ``POST /v1/spaces/{space}/investigations``; the server's workers run it.
- ``LocalBackend`` (``vigil mcp`` over stdio): no server runs, so an investigation runs in this
  process, in a background thread, with the same Investigator the CLI uses; it is recorded in the
  same state store (not in the job queue, so a later ``vigil serve`` does not run it again)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from vigil.app import App
from vigil.engine import Settings as EngineSettings
from vigil.errors import VigilError
from vigil.model import (
    ApiToken,
    Investigation,
    Role,
    StartingPoint,
)

log = logging.getLogger("vigil.mcp")


class Forbidden(VigilError):
    """The token's role does not allow the tool."""


@dataclass(frozen=True)
class Caller:
    """Who calls a tool: a live token, which names the one space every tool is confined to."""

    token: ApiToken

    @property
    def space(self) -> str:
        return self.token.space_id

    @property
    def role(self) -> Role:
        return self.token.role

    @property
    def actor(self) -> str:
        return f"mcp:token:{self.token.id}" + (f" ({self.token.name})" if self.token.name else "")

    def need(self, role: Role) -> None:
        if not self.token.role.allows(role):
            raise Forbidden(f"this needs the {role.value} role; the token has {self.token.role.value}")


class Backend(Protocol):
    app: App

    def resolve(self, secret: str) -> ApiToken | None: ...

    def start(self, caller: Caller, point: StartingPoint, start: datetime | None, end: datetime | None,
              at: datetime | None, text: str) -> Investigation: ...

    def job(self, inv_id: str) -> dict[str, Any] | None: ...

    @property
    def respond(self) -> Any: ...              # vigil.respond.service.RespondService


class RuntimeBackend:
    """Over HTTP, inside the server: the durable queue and the server's workers."""

    def __init__(self, runtime: Any) -> None:       # vigil.server.runtime.Runtime (imported lazily by callers)
        self.rt = runtime

    @property
    def app(self) -> App:
        return self.rt.app

    def resolve(self, secret: str) -> ApiToken | None:
        return self.rt.tokens.resolve(secret)

    def start(self, caller: Caller, point: StartingPoint, start: datetime | None, end: datetime | None,
              at: datetime | None, text: str) -> Investigation:
        return self.rt.services.investigations.start_manual(caller.space, point, start, end, at, text, caller.actor)

    def job(self, inv_id: str) -> dict[str, Any] | None:
        try:
            return self.rt.services.investigations.job(None, inv_id)
        except VigilError:
            return None

    @property
    def respond(self) -> Any:
        return self.rt.respond


class LocalBackend:
    """Over stdio: investigations run here, one at a time, in a background thread."""

    def __init__(self, app: App, max_attempts: int = 3) -> None:
        self.app = app
        self.engine_settings = EngineSettings()
        self.max_attempts = max_attempts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-mcp-investigation")
        self._lock = threading.Lock()
        self._pending: list[tuple[Future, str]] = []
        self._respond = None

    @property
    def respond(self) -> Any:
        """Mitigation specs, chat, proposals, reports; reruns and notifications need ``vigil serve``."""
        return self.app.services.respond

    def resolve(self, secret: str) -> ApiToken | None:
        # no cache: a token revoked with `vigil token revoke` stops working at the next call
        return self.app.services.tokens.resolve(secret)

    def start(self, caller: Caller, point: StartingPoint, start: datetime | None, end: datetime | None,
              at: datetime | None, text: str) -> Investigation:
        """The same window rules and starting points as ``Runtime.start_manual``; no queue."""
        inv, wait = self.app.services.investigations.plan_and_start(
            caller.space, point, start, end, at, text, caller.actor, queue=False,
            extra={"runs": "in the mcp process"})
        with self._lock:
            self._pending = [(f, i) for f, i in self._pending if not f.done()]
            self._pending.append((self._pool.submit(self._run, inv, wait), inv.id))
        return inv

    def _run(self, inv: Investigation, wait: datetime | None) -> None:
        if wait is not None:
            time.sleep(max(0.0, (wait - datetime.now(UTC)).total_seconds()))
        try:
            self.app.services.investigations.run_here(inv)
        except Exception as exc:    # noqa: BLE001 - the investigator journals it and marks it failed
            log.warning("investigation %s failed: %s", inv.id, str(exc).splitlines()[0] if str(exc) else exc)

    def job(self, inv_id: str) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        """Let the running investigation finish (it is seconds) so it is not left 'running'; those that
        had not started yet are marked cancelled rather than left queued forever."""
        with self._lock:
            pending, self._pending = self._pending, []
        for fut, inv_id in pending:
            if fut.cancel():
                try:
                    self.app.services.investigations.abandon(inv_id, "the MCP server stopped before it ran")
                except VigilError:
                    pass
        self._pool.shutdown(wait=True)
