"""Console sign-in: server-side sessions keyed by a random cookie, holding token *ids* only.

Why server-side: the browser holds nothing but an opaque, HttpOnly session id (never the API token,
which JavaScript could otherwise read or a stolen cookie could replay against the REST API), and
signing out really ends the session. A session can hold one token per space (sign in again with
another space's token to add it): the space switcher lists exactly those spaces. Every request
re-reads the token's record, so a revoked token stops working in the console at once.

The sessions themselves are kept by ``vigil.store.sessions`` (in memory, or in the state database
in scale-out mode) and reached through ``services.sessions``; this module holds the cookies and the
CSRF comparison.

CSRF: every session has a random token that each POST form carries in a hidden field and that is
compared in constant time; the sign-in form, which has no session yet, uses a double-submit cookie.
Cookies are SameSite=Strict, HttpOnly, scoped to /ui, and Secure when the request came over https."""

from __future__ import annotations

import hmac
import os

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "vigil_session"
LOGIN_COOKIE = "vigil_login_csrf"


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
