"""ASGI middleware: request body limits (checked before any handler runs, so an oversized body is
refused with 413 and nothing is parsed or written), security headers on every response, and per-route
response counting."""

from __future__ import annotations

import json

from vigil.server.metrics import ServerMetrics

OTLP_PATHS = ("/v1/traces", "/v1/logs", "/v1/metrics")


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """``limit`` for the API, ``webhook_limit`` for alert webhooks (a storm's group can be large),
    ``otlp_limit`` for OTLP exports."""

    def __init__(self, app, limit: int, otlp_limit: int, webhook_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.otlp_limit = otlp_limit
        self.webhook_limit = webhook_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self.otlp_limit if path in OTLP_PATHS else self.webhook_limit if "/webhooks/" in path else self.limit
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    return await _send_error(send, 400, "invalid Content-Length")
                if declared > limit:
                    return await _send_error(send, 413, f"the body is larger than {limit} bytes")
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _send_error(send, 413, f"the body is larger than {limit} bytes")
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class ResponseCounter:
    def __init__(self, app, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def wrapped(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.http.labels(route, f"{status['code'] // 100}xx").inc()


# The console's policy: its own script and stylesheet only, nothing from elsewhere, never in a frame.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
# A self-contained HTML report: its inline stylesheet and inline SVG, no script, nothing fetched.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
              "base-uri 'none'; form-action 'none'")


class SecurityHeaders:
    """Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and a
    ``Referrer-Policy``; every HTML response also a ``Content-Security-Policy`` (``CSP`` unless the route
    chose a stricter one, as the reports do). One place, so no HTML page of the server can miss them."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def wrapped(msg):
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers") or [])
                have = {k.lower() for k, _ in headers}
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                add = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                       (b"referrer-policy", b"same-origin")]
                if ctype.split(b";")[0].strip().lower() in (b"text/html", b"application/xhtml+xml", b"image/svg+xml"):
                    add.append((b"content-security-policy", CSP.encode()))
                headers += [(k, v) for k, v in add if k not in have]
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, wrapped)
