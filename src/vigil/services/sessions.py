"""Console sign-in and sign-out: the session store (``vigil.store.sessions``: in memory, or shared in
the state database in scale-out mode) behind the one path the console takes. Signing in always issues
a new session id (no fixation), keeps the spaces the old session held, and records the sign-in in the
audit log."""

from __future__ import annotations

from typing import Any

from vigil.model.console_session import ConsoleSession
from vigil.services.audit import AuditService


class SessionService:
    def __init__(self, store: Any, audit: AuditService) -> None:
        self.store = store
        self.audit = audit

    def get(self, sid: str | None) -> ConsoleSession | None:
        return self.store.get(sid)

    def sign_in(self, old_sid: str | None, space_id: str, token_id: str, actor: str) -> tuple[str, ConsoleSession]:
        """A new session holding ``token_id`` for ``space_id`` and the tokens of the session ``old_sid``
        (which ends)."""
        old = self.store.get(old_sid)
        tokens = dict(old.tokens) if old else {}
        tokens[space_id] = token_id
        self.store.drop(old_sid)
        sid, sess = self.store.create(tokens)
        self.audit.record(actor, "console-sign-in", space_id)
        return sid, sess

    def sign_out(self, sid: str | None) -> None:
        self.store.drop(sid)

    def count(self) -> int:
        return self.store.count()
