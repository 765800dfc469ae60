"""Console sessions: server-side, keyed by a random cookie, holding token *ids* only; a session ends
after ``IDLE_S`` unused or ``MAX_AGE_S`` in all.

- ``MemorySessionStore``: in the server process's memory (``vigil serve``, one process per state
  database): a restart signs everybody out, which is the safe direction; at most ``MAX_SESSIONS``
  (the least recently used go first).
- ``DbSessionStore``: in the state database, for scale-out mode: a user signed in through one replica
  is signed in on every replica. Rows are keyed by a sha256 of the cookie (the database never holds a
  live cookie).

The console reaches either through ``services.sessions`` (``vigil.services.sessions``)."""

from __future__ import annotations

import secrets
import threading
import time

from sqlalchemy import delete, select

from vigil.model.console_session import ConsoleSession, session_key
from vigil.store.state import StateStore
from vigil.store.tables import ConsoleSessionRow

TOUCH_S = 60.0      # "last seen" is written at most this often (a page view is not a write each time)
IDLE_S = 8 * 3600.0           # a session unused this long ends
MAX_AGE_S = 7 * 86400.0       # and every session ends after this long
MAX_SESSIONS = 10_000         # in memory: at most this many


class MemorySessionStore:
    def __init__(self, idle_s: float = IDLE_S, max_age_s: float = MAX_AGE_S) -> None:
        self.idle_s, self.max_age_s = idle_s, max_age_s
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def create(self, tokens: dict[str, str]) -> tuple[str, ConsoleSession]:
        sid = secrets.token_urlsafe(32)
        sess = ConsoleSession(csrf=secrets.token_urlsafe(32), tokens=dict(tokens))
        with self._lock:
            self._expire()
            self._sessions[session_key(sid)] = sess
        return sid, sess

    def get(self, sid: str | None) -> ConsoleSession | None:
        if not sid or len(sid) > 100:
            return None
        now = time.time()
        with self._lock:
            sess = self._sessions.get(session_key(sid))
            if sess is None:
                return None
            if now - sess.seen > self.idle_s or now - sess.created > self.max_age_s:
                del self._sessions[session_key(sid)]
                return None
            sess.seen = now
            return sess

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(session_key(sid), None)

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expire(self) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        now = time.time()
        for k, s in list(self._sessions.items()):
            if now - s.seen > self.idle_s or now - s.created > self.max_age_s:
                del self._sessions[k]
        while len(self._sessions) >= MAX_SESSIONS:              # still full: the least recently used go
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].seen)]




class DbSessionStore:
    def __init__(self, state: StateStore, idle_s: float = IDLE_S, max_age_s: float = MAX_AGE_S) -> None:
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
