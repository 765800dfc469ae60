"""Console sign-in: server-side sessions keyed by a random cookie, holding token *ids* only.

Why server-side: the browser holds nothing but an opaque, HttpOnly session id (never the API token,
which JavaScript could otherwise read or a stolen cookie could replay against the REST API), and
signing out really ends the session. A session can hold one token per space (sign in again with
another space's token to add it): the space switcher lists exactly those spaces. Every request
re-reads the token's record, so a revoked token stops working in the console at once.

Sessions live in the server process's memory (``vigil serve`` is one process per state database):
a restart signs everybody out, which is the safe direction.

CSRF: every session has a random token that each POST form carries in a hidden field and that is
compared in constant time; the sign-in form, which has no session yet, uses a double-submit cookie.
Cookies are SameSite=Strict, HttpOnly, scoped to /ui, and Secure when the request came over https."""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time

from starlette.requests import Request
from starlette.responses import Response

from vigil.model.console_session import ConsoleSession, session_key

COOKIE = "vigil_session"
LOGIN_COOKIE = "vigil_login_csrf"
IDLE_S = 8 * 3600.0           # a session unused this long ends
MAX_AGE_S = 7 * 86400.0       # and every session ends after this long
MAX_SESSIONS = 10_000




class SessionStore:
    def __init__(self) -> None:
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
            if now - sess.seen > IDLE_S or now - sess.created > MAX_AGE_S:
                del self._sessions[session_key(sid)]
                return None
            sess.seen = now
            return sess

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(session_key(sid), None)

    def _expire(self) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        now = time.time()
        for k, s in list(self._sessions.items()):
            if now - s.seen > IDLE_S or now - s.created > MAX_AGE_S:
                del self._sessions[k]
        while len(self._sessions) >= MAX_SESSIONS:              # still full: the least recently used go
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].seen)]


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def secure(request: Request) -> bool:
    """Secure cookies over https; ``VIGIL_COOKIE_SECURE=1`` forces them (behind a TLS-terminating proxy
    that does not forward the scheme)."""
    return request.url.scheme == "https" or os.environ.get("VIGIL_COOKIE_SECURE", "") in ("1", "true", "yes")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/ui", httponly=True, samesite="strict",
                        secure=secure(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/ui", httponly=True, samesite="strict", secure=secure(request))
