"""Change webhooks: GitHub and GitLab deliveries become change events in the space's embedded store
(deploys the engine weighs as possible triggers). Verified by the space's own github/gitlab secret
(``PUT /v1/spaces/{space}/integrations/github|gitlab``), never by a token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from vigil.api.auth import SpacePath
from vigil.api.errors import ERROR_RESPONSES
from vigil.integrations import WebhookRejected
from vigil.integrations.changes import ChangeEvent

router = APIRouter(responses=ERROR_RESPONSES)
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


class ChangesAccepted(BaseModel):
    accepted: int
    changes: list[dict[str, Any]]
    note: str = ""


def _rt(request: Request):
    return request.app.state.runtime


def _svc(request: Request):
    return request.app.state.runtime.services


async def _accept(request: Request, space: str, kind: str, events: list[ChangeEvent], note: str):
    if events:
        stored = await run_in_threadpool(_svc(request).changes.record, space, kind, events)
        if len(stored) < len(events):
            note = (note + "; " if note else "") + f"{len(events) - len(stored)} already recorded (a redelivery)"
        events = stored
    _rt(request).metrics.webhooks.labels(kind).inc()
    return JSONResponse(ChangesAccepted(accepted=len(events), changes=[e.as_dict() for e in events], note=note)
                        .model_dump(), status_code=202)


def _rejected(request: Request, kind: str, exc: WebhookRejected) -> None:
    _rt(request).metrics.webhook_rejections.labels(kind, exc.reason).inc()


async def _verified(request: Request, space: str, kind: str) -> tuple[list[ChangeEvent], str]:
    """The delivery verified by its trigger with the space's secret and parsed: (events, note)."""
    body = await request.body()
    try:
        (events, note), _config = await run_in_threadpool(_svc(request).webhooks.verified, space, kind,
                                                          request.headers, body)
    except WebhookRejected as exc:
        _rejected(request, kind, exc)
        raise
    return events, note


@router.post("/v1/spaces/{space}/webhooks/github", response_model=ChangesAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_BODY,
             summary="GitHub deployment, deployment_status and workflow_run events as changes "
                     "(X-Hub-Signature-256 verified)")
async def webhook_github(request: Request, space: SpacePath):
    return await _accept(request, space, "github", *await _verified(request, space, "github"))


@router.post("/v1/spaces/{space}/webhooks/gitlab", response_model=ChangesAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_BODY,
             summary="GitLab Deployment and Pipeline hooks as changes (X-Gitlab-Token verified)")
async def webhook_gitlab(request: Request, space: SpacePath):
    return await _accept(request, space, "gitlab", *await _verified(request, space, "gitlab"))
