"""The MCP server over Streamable HTTP, as one ASGI endpoint (``/mcp`` in ``vigil serve``).

Every request must carry ``Authorization: Bearer <token>``, checked before the SDK sees the body:
missing or invalid -> 401 with a one-line JSON error, exactly like the REST API. The tools resolve
the same header again to learn the caller's space and role, so each call is judged by the token it
carries, never by whoever opened a session. The SDK runs stateless with JSON responses: no session
state to pin to a token or to lose across workers.

DNS-rebinding protection (Host/Origin checks) is off on purpose: a browser page cannot attach the
bearer token, and the REST API next to it is protected the same way.

The SDK's session manager needs a task group for its lifetime: ``lifespan()`` must be entered by the
host app's lifespan (``create_app`` does); until it is, the endpoint answers 503."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from vigil.mcp.backend import Backend
from vigil.mcp.server import build_server

CHALLENGE = (b"www-authenticate", b"Bearer")


def bearer_of(headers) -> str | None:
    scheme, _, cred = (headers.get("authorization") or "").partition(" ")
    cred = cred.strip()
    return cred if scheme.lower() == "bearer" and cred else None


def _secret_of(ctx: Context) -> str | None:
    """The bearer token of the HTTP request carrying this tool call."""
    req = ctx.request_context.request
    headers = getattr(req, "headers", None)
    return bearer_of(headers) if headers is not None else None


async def _error(send: Send, status: int, message: str, challenge: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append(CHALLENGE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class McpEndpoint:
    """An ASGI app: bearer check, then the SDK's Streamable HTTP handler."""

    def __init__(self, backend: Backend, max_body_bytes: int = 1 << 20) -> None:
        self.backend = backend
        self.server = build_server(backend, _secret_of)
        # builds (and keeps) the SDK's session manager; the Starlette app it returns is not used
        self.server.streamable_http_app(
            stateless_http=True, json_response=True, max_request_body_size=max_body_bytes,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.manager = self.server.session_manager
        self.running = False

    @asynccontextmanager
    async def lifespan(self):
        async with self.manager.run():
            self.running = True
            try:
                yield
            finally:
                self.running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        secret = bearer_of(Request(scope).headers)
        if secret is None:
            return await _error(send, 401, "missing bearer token: send 'Authorization: Bearer <token>'", True)
        tok = await run_in_threadpool(self.backend.resolve, secret)
        if tok is None:
            return await _error(send, 401, "invalid or revoked token", True)
        if not self.running:
            return await _error(send, 503, "the MCP endpoint is not running (the server is starting or stopping)")
        await self.manager.handle_request(scope, receive, send)
