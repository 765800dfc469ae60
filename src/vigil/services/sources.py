"""A space's telemetry sources: register (validated, guarded and checked before anything is stored),
check again, delete, apply a space file; each change audited in its own transaction."""

from __future__ import annotations

from typing import Any

from vigil.errors import InputError, Unprocessable
from vigil.services.hooks import Hooks
from vigil.sources import registry, spacefile

EMBEDDED = "embedded"


class SourceService:
    def __init__(self, app: Any, hooks: Hooks) -> None:
        self.app = app
        self.hooks = hooks

    @property
    def store(self) -> Any:
        return self.app.state

    def list(self, space: str) -> list[dict[str, Any]]:
        """[{name, kind, config, created_at, last_check}] by name (the registered sources)."""
        with self.store.read() as u:
            u.spaces.get(space)
            return u.sources.list(space)

    def embedded(self, space: str) -> dict[str, Any]:
        """What the embedded store holds for the space: row counts and the time extent."""
        extent = self.app.telemetry.extent(space)
        return {"counts": self.app.telemetry.counts(space), "extent": list(extent) if extent else None}

    def topology(self, space: str) -> Any:
        """Resources and edges from the store and the space's connectors (of an existing space)."""
        with self.store.read() as u:
            u.spaces.get(space)
        return self.app.sources.topology(space)

    def put(self, space: str, name: str, kind: str, config: dict[str, Any], actor: str,
            check: bool = True) -> tuple[dict[str, Any], registry.CheckResult | None]:
        """Register (or replace) a source: its config validated and guarded (a space admin does not reach
        the Vigil host), its backend reached unless ``check`` is off; nothing is stored when any of that
        fails (422)."""
        if name == EMBEDDED:
            raise InputError("'embedded' is the built-in store; choose another name")
        with self.store.read() as u:
            u.spaces.get(space)
        try:
            config = registry.normalize(kind, config)
            registry.guard_host_access(kind, config)
        except InputError as exc:
            raise Unprocessable(str(exc)) from None
        result = registry.check(name, kind, config) if check else None
        if result is not None and not result.ok:
            raise Unprocessable(f"source {name!r} failed its check, nothing stored: {result.message}")
        with self.store.uow() as u:
            u.spaces.get(space)
            out = u.sources.put_many(space, [(name, kind, config, (result.ok, result.message) if result else None)])[0]
            u.audit.add(actor, "source-put", space, name, {"kind": kind, "checked": result is not None})
        self.hooks.sources_changed(space)
        return out, result

    def check(self, space: str, name: str, actor: str) -> tuple[dict[str, Any], registry.CheckResult]:
        """Reach a stored source's backend again and record the outcome (never raises for a failed check)."""
        with self.store.read() as u:
            src = u.sources.get(space, name)
        try:
            result = registry.check(name, src["kind"], src["config"])
        except InputError as exc:       # a row stored by an older version that no longer validates
            result = registry.CheckResult(False, str(exc))
        with self.store.uow() as u:
            u.sources.record_check(space, name, result.ok, result.message, result.at)
            u.audit.add(actor, "source-check", space, name, {"ok": result.ok})
        return src, result

    def delete(self, space: str, name: str, actor: str) -> None:
        with self.store.uow() as u:
            u.sources.delete(space, name)
            u.audit.add(actor, "source-delete", space, name)
        self.hooks.sources_changed(space)

    def apply(self, spec: spacefile.SpaceFile, actor: str, check: bool = True,
              prune: bool = False) -> spacefile.Applied:
        """``vigil space apply``: the space and its sources from a file, all or nothing."""
        out = spacefile.apply(self.store, spec, check=check, prune=prune, actor=actor)
        self.hooks.sources_changed(spec.space)
        return out
