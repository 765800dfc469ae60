"""Reading the audit log. Entries are written by the service that makes each change, in the change's
own transaction (``uow.audit.add``); ``record`` is for the events that change nothing else (a console
sign-in, an SNS subscription handshake)."""

from __future__ import annotations

from typing import Any


class AuditService:
    def __init__(self, store: Any) -> None:
        self.store = store

    def log(self, space: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.read() as u:
            u.spaces.get(space)
            return u.audit.log(space, limit)

    def record(self, actor: str, action: str, space: str | None, target: str = "",
               detail: dict[str, Any] | None = None) -> None:
        with self.store.uow() as u:
            u.audit.add(actor, action, space, target, detail)
