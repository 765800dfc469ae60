"""OTLP/HTTP ingestion and the alert webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from vigil.api.auth import (
    CHALLENGE,
    Operator,
    Principal,
    SpacePath,
    authenticate,
    authorize,
    bearer,
    need_own_space,
)
from vigil.api.errors import ERROR_RESPONSES, ApiError, error
from vigil.api.schemas import AlertsAccepted
from vigil.ingest import otlp
from vigil.integrations import WebhookRejected
from vigil.integrations.triggers import sns_message
from vigil.model import IncomingAlert, Role
from vigil.server.admission import Busy

router = APIRouter(responses=ERROR_RESPONSES)
OtlpWriter = Annotated[Principal, need_own_space(Role.OPERATOR)]

_OTLP_BODY = {"requestBody": {"required": True, "content": {
    otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
    otlp.JSON: {"schema": {"type": "object"}}}}}
_OTLP_RESPONSES = {200: {"content": {otlp.PROTOBUF: {}, otlp.JSON: {}},
                         "description": "Export*ServiceResponse (partial_success lists rejected items)"}}


def _rt(request: Request):
    return request.app.state.runtime


async def _otlp(request: Request, signal: str, who: Principal) -> Response:
    rt = _rt(request)
    try:
        ctype = otlp.media_type(request.headers.get("content-type"))
    except otlp.OtlpError as exc:
        rt.metrics.otlp_requests.labels(signal, "rejected").inc()
        return error(exc.status, str(exc))
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    space = who.space

    def work():
        raw = otlp.decompress(body, encoding, rt.settings.max_otlp_decoded_bytes)
        req = otlp.parse(signal, raw, ctype)
        return rt.services.ingest.otlp(signal, space, req)

    try:
        async with admitted(request, space):
            dec, stored = await run_in_threadpool(work)
    except otlp.OtlpError as exc:
        rt.metrics.otlp_requests.labels(signal, "rejected").inc()
        return Response(otlp.status_body(ctype, 3, str(exc)), status_code=exc.status, media_type=ctype)
    rt.metrics.otlp_requests.labels(signal, "partial" if dec.rejected else "ok").inc()
    rt.metrics.otlp_items.labels(signal).inc(stored)
    if dec.rejected:
        rt.metrics.otlp_rejected.labels(signal).inc(dec.rejected)
    return Response(otlp.response(signal, ctype, dec.rejected, dec.reason), media_type=ctype)


@router.post("/v1/traces", tags=["otlp"], openapi_extra=_OTLP_BODY, responses=_OTLP_RESPONSES,
             summary="OTLP/HTTP traces export (protobuf or JSON, optionally gzip) into the token's space")
async def otlp_traces(request: Request, who: OtlpWriter):
    return await _otlp(request, "traces", who)


@router.post("/v1/logs", tags=["otlp"], openapi_extra=_OTLP_BODY, responses=_OTLP_RESPONSES,
             summary="OTLP/HTTP logs export into the token's space")
async def otlp_logs(request: Request, who: OtlpWriter):
    return await _otlp(request, "logs", who)


@router.post("/v1/metrics", tags=["otlp"], openapi_extra=_OTLP_BODY, responses=_OTLP_RESPONSES,
             summary="OTLP/HTTP metrics export into the token's space")
async def otlp_metrics(request: Request, who: OtlpWriter):
    return await _otlp(request, "metrics", who)


# -- webhooks -------------------------------------------------------------------------------------
_WEBHOOK_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


def _svc(request: Request):
    return request.app.state.runtime.services


@asynccontextmanager
async def admitted(request: Request, space: str) -> AsyncIterator[None]:
    """Run a delivery's work in one of the space's ingest slots (``vigil.server.admission``): a space's
    storm waits its turn without holding the threads other spaces' requests need."""
    try:
        async with _rt(request).admission.slot(space):
            yield
    except Busy as exc:
        raise ApiError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None


async def _accept(request: Request, space: str, kind: str, alerts: list[IncomingAlert], actor: str):
    rt = _rt(request)

    def work() -> bytes:
        outcomes = rt.accept_alerts(space, alerts, actor) if alerts else []
        return AlertsAccepted(accepted=len(alerts), outcomes=[o.model_dump() for o in outcomes]).model_dump_json()

    body = await run_in_threadpool(work)
    rt.metrics.webhooks.labels(kind).inc()
    return Response(body, status_code=202, media_type="application/json")


def _rejected(request: Request, kind: str, exc: WebhookRejected) -> None:
    _rt(request).metrics.webhook_rejections.labels(kind, exc.reason).inc()


async def _verified(request: Request, space: str, kind: str, body: bytes) -> dict:
    """A signed delivery checked by its trigger with the space's secret (``WebhookService.verify``):
    the integration's config. Rejections are counted."""
    try:
        return await run_in_threadpool(_svc(request).webhooks.verify, space, kind, request.headers, body)
    except WebhookRejected as exc:
        _rejected(request, kind, exc)
        raise


async def _parsed(request: Request, kind: str, body: bytes, config: dict | None = None) -> list[IncomingAlert]:
    """The delivery's alerts, parsed by its trigger off the event loop (a storm's delivery is megabytes)."""
    try:
        return await run_in_threadpool(_svc(request).webhooks.parse, kind, request.headers, body, config)
    except WebhookRejected as exc:
        _rejected(request, kind, exc)
        raise


@router.post("/v1/spaces/{space}/webhooks/alertmanager", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Prometheus Alertmanager webhook (version 4); authenticate with an operator token")
async def webhook_alertmanager(request: Request, space: SpacePath, who: Operator):
    body = await request.body()
    async with admitted(request, space):
        alerts = await _parsed(request, "alertmanager", body)
        return await _accept(request, space, "alertmanager", alerts, f"alertmanager via {who.actor}")


@router.post("/v1/spaces/{space}/webhooks/grafana", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Grafana alerting webhook: an operator token, or Grafana's HMAC signature")
async def webhook_grafana(request: Request, space: SpacePath):
    body = await request.body()
    hooks = _svc(request).webhooks
    config = None
    try:
        if bearer(request) is not None:
            tok = await run_in_threadpool(authenticate, request)
            actor = "grafana via " + authorize(tok, space, Role.OPERATOR).actor
        else:
            if not await run_in_threadpool(hooks.has_signature, space, "grafana", request.headers):
                _rt(request).metrics.webhook_rejections.labels("grafana", "unauthorized").inc()
                raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>' (or Grafana's "
                                    "HMAC signature, once the space has a grafana secret)", CHALLENGE)
            config = await run_in_threadpool(hooks.verify, space, "grafana", request.headers, body)
            actor = "grafana (signed)"
    except WebhookRejected as exc:
        _rejected(request, "grafana", exc)
        raise
    async with admitted(request, space):
        alerts = await _parsed(request, "grafana", body, config)
        return await _accept(request, space, "grafana", alerts, actor)


@router.post("/v1/spaces/{space}/webhooks/pagerduty", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="PagerDuty v3 webhook, verified by X-PagerDuty-Signature")
async def webhook_pagerduty(request: Request, space: SpacePath):
    body = await request.body()
    config = await _verified(request, space, "pagerduty", body)
    async with admitted(request, space):
        alerts = await _parsed(request, "pagerduty", body, config)
        return await _accept(request, space, "pagerduty", alerts, "pagerduty (signed)")


@router.post("/v1/spaces/{space}/webhooks/generic", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Generic webhook signed with HMAC-SHA256 (X-Vigil-Timestamp, X-Vigil-Signature)")
async def webhook_generic(request: Request, space: SpacePath):
    body = await request.body()
    config = await _verified(request, space, "generic", body)
    async with admitted(request, space):
        alerts = await _parsed(request, "generic", body, config)
        return await _accept(request, space, "generic", alerts, "generic webhook (signed)")


@router.post("/v1/spaces/{space}/webhooks/sns", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Amazon SNS (CloudWatch alarms), verified by the SNS message signature and topic")
async def webhook_sns(request: Request, space: SpacePath):
    rt = _rt(request)
    body = await request.body()
    config = await _verified(request, space, "sns", body)
    msg = sns_message(request.headers, body)
    if msg.get("Type") == "Notification":
        async with admitted(request, space):
            alerts = await _parsed(request, "sns", body, config)
            return await _accept(request, space, "sns", alerts, "sns (signed)")
    svc = _svc(request)
    outcome = await run_in_threadpool(svc.webhooks.sns_control, space, request.headers, body, config, svc.audit)
    rt.metrics.webhooks.labels("sns").inc()
    return JSONResponse({"accepted": 0, "outcomes": [{"fingerprint": str(msg.get("MessageId"))[:200],
                                                      "outcome": outcome}]}, status_code=202)
