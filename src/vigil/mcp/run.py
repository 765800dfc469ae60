"""``vigil mcp``: the MCP server on its own, over stdio (default) or Streamable HTTP.

stdio: the token comes from ``VIGIL_TOKEN`` and is checked before serving (a missing or invalid one
is a one-line error and exit 2, with nothing on stdout); while serving, stdout carries only the
protocol (the SDK points fd 1 at stderr for everything else) and logging goes to stderr. No server
runs, so investigations run in this process. The process opens the telemetry store, which a running
``vigil serve`` owns: with a server running, connect to its ``/mcp`` over HTTP instead.

http: a Runtime (state, telemetry, the worker pool and its durable queue) with only ``/mcp`` and
the health endpoints; every request carries its own bearer token."""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager

from vigil.errors import VigilError

log = logging.getLogger("vigil.mcp")


def serve_stdio(secret: str | None) -> None:
    if not secret or not secret.strip():
        raise VigilError("VIGIL_TOKEN is not set: create a token with `vigil token create --space NAME --role "
                         "viewer` and pass it in the MCP server's environment")
    secret = secret.strip()
    # the token is checked first (the state store alone), then the telemetry store is opened
    from vigil.app import App
    from vigil.config import Settings
    from vigil.mcp.backend import LocalBackend
    from vigil.mcp.server import build_server
    app = App(Settings.from_env())
    try:
        tok = app.services.tokens.resolve(secret)
        if tok is None:
            raise VigilError("VIGIL_TOKEN is not a valid token (unknown or revoked)")
        app.services.telemetry.open()      # the store held by `vigil serve` is a clear error now, not at the first call
    except BaseException:
        app.close()
        raise
    backend = LocalBackend(app)
    print(f"vigil mcp: serving space {tok.space_id} ({tok.role.value}) over stdio", file=sys.stderr, flush=True)
    try:
        build_server(backend, lambda _ctx: secret).run("stdio")
    finally:
        backend.close()
        app.close()


def http_app(runtime, start: bool = True):
    """A Starlette app with ``/mcp`` (and ``/healthz``, ``/readyz``) over ``runtime``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from vigil.mcp.backend import RuntimeBackend
    from vigil.mcp.http import McpEndpoint

    endpoint = McpEndpoint(RuntimeBackend(runtime), max_body_bytes=runtime.settings.max_body_bytes)

    @asynccontextmanager
    async def lifespan(_app):
        if start:
            await run_in_threadpool(runtime.start)
        try:
            async with endpoint.lifespan():
                yield
        finally:
            if start:
                await run_in_threadpool(runtime.stop)

    async def healthz(_request):
        return JSONResponse({"status": "ok"})

    async def readyz(_request):
        checks = await run_in_threadpool(runtime.ready)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503)

    return Starlette(routes=[Route("/mcp", endpoint=endpoint), Route("/healthz", healthz),
                             Route("/readyz", readyz)], lifespan=lifespan)


def serve_http(host: str, port: int, workers: int | None = None) -> None:
    import uvicorn

    from vigil.server.runtime import Runtime
    from vigil.server.settings import ServerSettings

    if not 0 < port < 65536:
        raise VigilError(f"port {port} is out of range")
    from vigil.app import App
    settings = ServerSettings.from_env(host=host, port=port, workers=workers)
    app = App()
    _ = app.services.spaces.list(), app.services.telemetry.open()     # a store in use is a clear error now
    rt = Runtime(app, settings)
    print(f"vigil mcp: Streamable HTTP on http://{host}:{port}/mcp (bearer token per request, "
          f"{settings.workers} workers)", file=sys.stderr, flush=True)
    uvicorn.run(http_app(rt), host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
