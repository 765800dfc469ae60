"""Every error the API returns is a 4xx (or, for a bug, a 500) with a one-line JSON body:
``{"error": "..."}``. Nothing user-controlled reaches the logs except its kind."""

from __future__ import annotations

import errno
import logging

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil.errors import InputError, NotFound, VigilError
from vigil.integrations import WebhookRejected

log = logging.getLogger("vigil.api")


class ErrorOut(BaseModel):
    error: str


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())[:500]}, status_code=status, headers=headers)


def _loc(loc) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",) or len(loc) == 1)


def validation_message(errors: list[dict]) -> str:
    if not errors:
        return "invalid request"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()))
    msg = e.get("msg", "invalid")
    if e.get("type") == "json_invalid":
        return "the body is not valid JSON"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid {where}: {msg}{more}" if where else f"invalid request: {msg}{more}"


ERROR_RESPONSES = {code: {"model": ErrorOut, "description": desc} for code, desc in (
    (400, "Bad input"), (401, "Missing, invalid or revoked token"), (403, "Not allowed for this token"),
    (404, "Not found in this space"), (413, "Body too large"), (415, "Unsupported media type"),
    (422, "Invalid parameters or body"))}


def storage_problem(exc: BaseException) -> str | None:
    """What a storage failure means for a sender, or None when ``exc`` is not one."""
    seen, e = 0, exc
    while e is not None and seen < 5:
        text = str(e).lower()
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text \
                or "no space left" in text:
            return "the server's disk is full"
        e, seen = e.__cause__ or e.__context__, seen + 1
    if isinstance(exc, OperationalError | InterfaceError):
        return "the state database is unavailable"
    if isinstance(exc, duckdb.IOException | duckdb.FatalException):
        return "the telemetry store is unavailable"
    return None


async def _storage(r: Request, exc: Exception):
    what = storage_problem(exc)
    if what is None:            # an OSError of another kind: a bug, as any other exception
        route = getattr(r.scope.get("route"), "path", "?")
        log.error("internal error on %s %s: %s", r.method, route, type(exc).__name__)
        return error(500, "internal error")
    log.error("%s (%s on %s %s)", what, type(exc).__name__, r.method, getattr(r.scope.get("route"), "path", "?"))
    # a retry is safe: an alert is recorded once by its fingerprint (a delivery whose alerts were committed
    # before a later step failed comes back as duplicates), and a refused telemetry write kept nothing
    return error(503, f"{what}; retry later", {"Retry-After": "10"})


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_r: Request, exc: ApiError):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(WebhookRejected)
    async def _webhook(_r: Request, exc: WebhookRejected):
        return error(exc.status, str(exc))

    @app.exception_handler(NotFound)
    async def _nf(_r: Request, exc: NotFound):
        return error(404, str(exc))

    @app.exception_handler(InputError)
    async def _input(_r: Request, exc: InputError):
        return error(getattr(exc, "status", 400), str(exc))

    @app.exception_handler(VigilError)
    async def _vigil(_r: Request, exc: VigilError):
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError):
        return error(422, validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def _pydantic(_r: Request, exc: ValidationError):
        return error(400, validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    # storage that cannot take a write now (a full disk, a database restarting): 503 with Retry-After, so
    # that senders (Alertmanager, OTLP exporters, ...) retry; nothing of the request was committed
    for kind in (OperationalError, InterfaceError, duckdb.IOException, duckdb.FatalException,
                 duckdb.TransactionException, OSError):
        app.add_exception_handler(kind, _storage)

    @app.exception_handler(Exception)
    async def _bug(r: Request, exc: Exception):
        route = getattr(r.scope.get("route"), "path", "?")
        log.error("internal error on %s %s: %s", r.method, route, type(exc).__name__)
        return error(500, "internal error")
