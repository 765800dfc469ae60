"""OTLP/HTTP ingestion and the alert webhooks."""

from __future__ import annotations

import urllib.parse
import urllib.request
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
from vigil.integrations import WebhookRejected, alertmanager, generic, grafana, pagerduty, sns
from vigil.integrations.common import load_json, resolve_secret
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
        dec = rt.ingest.decode(signal, req, space, rt.resource_key(space))
        return dec, rt.ingest.store(signal, space, dec)

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


@asynccontextmanager
async def admitted(request: Request, space: str) -> AsyncIterator[None]:
    """Run a delivery's work in one of the space's ingest slots (``vigil.server.admission``): a space's
    storm waits its turn without holding the threads other spaces' requests need."""
    try:
        async with _rt(request).admission.slot(space):
            yield
    except Busy as exc:
        raise ApiError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None


async def _parse(parse, body: bytes) -> list[IncomingAlert]:
    """JSON and the trigger's parser off the event loop (a storm's delivery is megabytes)."""
    return await run_in_threadpool(lambda: parse(load_json(body)))


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


def _integration(request: Request, space: str, kind: str) -> tuple[dict, str | None]:
    got = _rt(request).state.get_integration(space, kind)
    if got is None:
        # the same answer whether or not the space exists: nothing is learnt without the secret
        raise WebhookRejected(f"{kind} webhooks are not enabled for this space", 403, "not-configured")
    return got


def signed_integration(request: Request, space: str, kind: str) -> tuple[dict, str]:
    """The config of a signed webhook integration and the secret it is verified with; refused when
    none is configured."""
    config, stored = _integration(request, space, kind)
    secret = resolve_secret(config, stored)
    if not secret:
        raise WebhookRejected(f"{kind} webhooks are not enabled for this space", 403, "not-configured")
    return config, secret


def _signing_secret(request: Request, space: str, kind: str) -> str:
    return signed_integration(request, space, kind)[1]


@router.post("/v1/spaces/{space}/webhooks/alertmanager", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Prometheus Alertmanager webhook (version 4); authenticate with an operator token")
async def webhook_alertmanager(request: Request, space: SpacePath, who: Operator):
    body = await request.body()
    async with admitted(request, space):
        try:
            alerts = await _parse(alertmanager.parse, body)
        except WebhookRejected as exc:
            _rejected(request, "alertmanager", exc)
            raise
        return await _accept(request, space, "alertmanager", alerts, f"alertmanager via {who.actor}")


@router.post("/v1/spaces/{space}/webhooks/grafana", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Grafana alerting webhook: an operator token, or Grafana's HMAC signature")
async def webhook_grafana(request: Request, space: SpacePath):
    body = await request.body()
    try:
        if bearer(request) is not None:
            tok = await run_in_threadpool(authenticate, request)
            actor = "grafana via " + authorize(tok, space, Role.OPERATOR).actor
        else:
            got = await run_in_threadpool(_rt(request).state.get_integration, space, "grafana")
            config, stored = got or ({}, None)
            secret = resolve_secret(config, stored)
            if not secret or not request.headers.get(str(config.get("header") or grafana.HEADER)):
                _rt(request).metrics.webhook_rejections.labels("grafana", "unauthorized").inc()
                raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>' (or Grafana's "
                                    "HMAC signature, once the space has a grafana secret)", CHALLENGE)
            grafana.verify(body, request.headers, secret, config, _rt(request).settings.webhook_tolerance_s)
            actor = "grafana (signed)"
        async with admitted(request, space):
            alerts = await _parse(grafana.parse, body)
            return await _accept(request, space, "grafana", alerts, actor)
    except WebhookRejected as exc:
        _rejected(request, "grafana", exc)
        raise


@router.post("/v1/spaces/{space}/webhooks/pagerduty", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="PagerDuty v3 webhook, verified by X-PagerDuty-Signature")
async def webhook_pagerduty(request: Request, space: SpacePath):
    body = await request.body()
    try:
        secret = await run_in_threadpool(_signing_secret, request, space, "pagerduty")
        pagerduty.verify(body, request.headers.get(pagerduty.HEADER), secret)
        async with admitted(request, space):
            alerts = await _parse(pagerduty.parse, body)
            return await _accept(request, space, "pagerduty", alerts, "pagerduty (signed)")
    except WebhookRejected as exc:
        _rejected(request, "pagerduty", exc)
        raise


@router.post("/v1/spaces/{space}/webhooks/generic", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Generic webhook signed with HMAC-SHA256 (X-Vigil-Timestamp, X-Vigil-Signature)")
async def webhook_generic(request: Request, space: SpacePath):
    body = await request.body()
    try:
        secret = await run_in_threadpool(_signing_secret, request, space, "generic")
        generic.verify(body, request.headers.get(generic.SIGNATURE), request.headers.get(generic.TIMESTAMP), secret,
                       _rt(request).settings.webhook_tolerance_s)
        async with admitted(request, space):
            alerts = await _parse(generic.parse, body)
            return await _accept(request, space, "generic", alerts, "generic webhook (signed)")
    except WebhookRejected as exc:
        _rejected(request, "generic", exc)
        raise


@router.post("/v1/spaces/{space}/webhooks/sns", response_model=AlertsAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_WEBHOOK_BODY,
             summary="Amazon SNS (CloudWatch alarms), verified by the SNS message signature and topic")
async def webhook_sns(request: Request, space: SpacePath):
    rt = _rt(request)
    body = await request.body()
    try:
        config, _ = await run_in_threadpool(_integration, request, space, "sns")
        msg = load_json(body)
        if not isinstance(msg, dict):
            raise WebhookRejected("the body must be an SNS message object")
        declared = request.headers.get("x-amz-sns-message-type")
        if declared and declared != msg.get("Type"):
            raise WebhookRejected("x-amz-sns-message-type does not match the message Type")
        fetcher = request.app.state.sns_certs
        await run_in_threadpool(lambda: sns.verify(msg, fetcher, list(config.get("topic_arns") or []),
                                                   max_age_s=rt.settings.sns_max_age_s,
                                                   skew_s=rt.settings.webhook_tolerance_s))
    except WebhookRejected as exc:
        _rejected(request, "sns", exc)
        raise
    kind = msg["Type"]
    if kind == "Notification":
        async with admitted(request, space):
            return await _accept(request, space, "sns", sns.parse_cloudwatch(msg), "sns (signed)")
    outcome = "unsubscribed"
    if kind == "SubscriptionConfirmation":
        outcome = "subscription-pending"
        url = str(msg.get("SubscribeURL", ""))
        cert = urllib.parse.urlsplit(str(msg.get("SigningCertURL", "")))
        target = urllib.parse.urlsplit(url)
        if config.get("auto_confirm") and (target.scheme, target.netloc) == (cert.scheme, cert.netloc):
            try:
                await run_in_threadpool(lambda: urllib.request.urlopen(url, timeout=5).read(65536))  # noqa: S310
                outcome = "subscription-confirmed"
            except OSError:
                outcome = "subscription-confirm-failed"
        await run_in_threadpool(rt.state.audit, "sns (signed)", f"sns-{outcome}", space,
                                str(msg.get("TopicArn"))[:200], {"subscribe_url": url[:1000]})
    else:
        await run_in_threadpool(rt.state.audit, "sns (signed)", "sns-unsubscribed", space,
                                str(msg.get("TopicArn"))[:200])
    rt.metrics.webhooks.labels("sns").inc()
    return JSONResponse({"accepted": 0, "outcomes": [{"fingerprint": str(msg.get("MessageId"))[:200],
                                                      "outcome": outcome}]}, status_code=202)
