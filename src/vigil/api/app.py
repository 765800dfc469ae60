"""The FastAPI application: health, readiness, metrics and the routers, over one ``Runtime``."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from vigil import __version__
from vigil.api import api_docs, errors
from vigil.api.middleware import BodyLimit, ResponseCounter, SecurityHeaders
from vigil.api.routes_changes import router as changes_router
from vigil.api.routes_ingest import router as ingest_router
from vigil.api.routes_inv import router as inv_router
from vigil.api.routes_respond import router as respond_router
from vigil.api.routes_space import router as space_router
from vigil.integrations.sns import CertFetcher
from vigil.mcp.backend import RuntimeBackend
from vigil.mcp.http import McpEndpoint
from vigil.server.runtime import Runtime
from vigil.web import mount as mount_console

DESCRIPTION = """Vigil's live server. Every endpoint under `/v1` needs `Authorization: Bearer <token>`,
a token scoped to one Agent Space with a role (viewer < operator < admin); a token never reaches
another space. Webhooks from PagerDuty, SNS, Grafana (signed) and the generic trigger are verified by
signature instead. Errors are one line: `{"error": "..."}`."""


def create_app(runtime: Runtime | None = None, start: bool = True) -> FastAPI:
    """``start`` runs the worker pool (and crash recovery) for the app's lifetime."""
    rt = runtime or Runtime()
    mcp = McpEndpoint(RuntimeBackend(rt), max_body_bytes=rt.settings.max_body_bytes)   # the MCP server at /mcp

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if start:
            await run_in_threadpool(rt.start)
        try:
            async with mcp.lifespan():      # the MCP SDK's session manager lives as long as the app
                yield
        finally:
            if start:
                await run_in_threadpool(rt.stop)

    # /docs and /redoc (Swagger UI, ReDoc) load their scripts from a CDN onto the server's origin: off
    # unless the operator turns them on (VIGIL_API_DOCS=1). The OpenAPI document itself is always served.
    app = FastAPI(title="Vigil", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.runtime = rt
    rt.services.webhooks.certs = CertFetcher(rt.settings.sns_cert_url_regex, rt.settings.sns_cert_timeout_s)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=rt.settings.max_body_bytes, otlp_limit=rt.settings.max_otlp_bytes,
                       webhook_limit=rt.settings.max_webhook_bytes)
    app.add_middleware(ResponseCounter, metrics=rt.metrics)
    app.add_middleware(SecurityHeaders)
    if rt.settings.api_docs:
        api_docs.mount(app)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"], summary="Readiness: state and telemetry stores answer, workers run",
             responses={503: {"model": errors.ErrorOut}})
    def readyz():
        checks = rt.ready()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="The server's own Prometheus metrics",
             responses={200: {"content": {"text/plain": {}}}})
    def metrics(_request: Request):
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/mcp", mcp, include_in_schema=False)     # bearer-checked; not a REST operation
    app.include_router(space_router)
    app.include_router(inv_router)
    app.include_router(ingest_router)
    app.include_router(changes_router)
    app.include_router(respond_router)
    mount_console(app)                                      # the operator console under /ui
    return app
