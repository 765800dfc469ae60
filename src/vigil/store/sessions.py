"""Console sessions in the state database, for scale-out mode: a user signed in through one ``vigil
serve`` replica is signed in on every replica. Same contract as the in-memory store of a single server
(``vigil.web.session.SessionStore``): rows are keyed by a sha256 of the cookie (the database never
holds a live cookie), hold token *ids* only, end after ``idle_s`` unused or ``max_age_s`` in all."""

from __future__ import annotations

import secrets
import time

from sqlalchemy import delete, select

from vigil.model.console_session import ConsoleSession, session_key
from vigil.store.state import StateStore
from vigil.store.tables import ConsoleSessionRow

TOUCH_S = 60.0      # "last seen" is written at most this often (a page view is not a write each time)




class DbSessionStore:
    def __init__(self, state: StateStore, idle_s: float = 8 * 3600.0, max_age_s: float = 7 * 86400.0) -> None:
        """``idle_s``, ``max_age_s``: the console's (``vigil.web.session``)."""
        self.state = state
        self.idle_s, self.max_age_s = idle_s, max_age_s
        self._last_expiry = 0.0

    def create(self, tokens: dict[str, str]) -> tuple[str, ConsoleSession]:
        sid = secrets.token_urlsafe(32)
        sess = ConsoleSession(csrf=secrets.token_urlsafe(32), tokens=dict(tokens))
        self._expire()
        with self.state.session() as s, s.begin():
            s.add(ConsoleSessionRow(key=session_key(sid), csrf=sess.csrf, tokens=sess.tokens, created_at=sess.created,
                                    seen_at=sess.seen))
        return sid, sess

    def get(self, sid: str | None) -> ConsoleSession | None:
        if not sid or len(sid) > 100:
            return None
        now = time.time()
        with self.state.session() as s, s.begin():
            row = s.get(ConsoleSessionRow, session_key(sid))
            if row is None:
                return None
            if now - row.seen_at > self.idle_s or now - row.created_at > self.max_age_s:
                s.delete(row)
                return None
            if now - row.seen_at > TOUCH_S:
                row.seen_at = now
            return ConsoleSession(csrf=row.csrf, tokens=dict(row.tokens or {}), created=row.created_at,
                                 seen=row.seen_at)

    def drop(self, sid: str | None) -> None:
        if sid:
            with self.state.session() as s, s.begin():
                s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.key == session_key(sid)))

    def _expire(self) -> None:
        now = time.time()
        if now - self._last_expiry < 300.0:
            return
        self._last_expiry = now
        with self.state.session() as s, s.begin():
            s.execute(delete(ConsoleSessionRow).where(
                (ConsoleSessionRow.seen_at < now - self.idle_s) | (ConsoleSessionRow.created_at < now - self.max_age_s)))

    def count(self) -> int:
        with self.state.session() as s:
            return len(s.scalars(select(ConsoleSessionRow.key)).all())
