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
from vigil.api.routes_ingest import signed_integration
from vigil.integrations import WebhookRejected, github, gitlab
from vigil.integrations.changes import ChangeEvent, frame
from vigil.integrations.common import load_json

router = APIRouter(responses=ERROR_RESPONSES)
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


class ChangesAccepted(BaseModel):
    accepted: int
    changes: list[dict[str, Any]]
    note: str = ""


def _rt(request: Request):
    return request.app.state.runtime


def _key(resource: str, ts: float, kind: str, description: str) -> tuple:
    return resource, round(float(ts), 3), kind, description


def _store(request: Request, space: str, kind: str, events: list[ChangeEvent]) -> list[ChangeEvent]:
    """Store the changes the space does not hold yet: a redelivery (GitHub retries, "Redeliver") or a
    replayed delivery adds nothing. Returns what was stored."""
    rt = _rt(request)
    lo, hi = min(e.ts for e in events), max(e.ts for e in events)
    have = rt.telemetry.changes(space, lo, hi + 1.0)
    seen = {_key(*r) for r in zip(have["resource"], have["ts"], have["kind"], have["description"], strict=True)}
    fresh = []
    for e in events:
        k = _key(e.resource, e.ts, e.kind, e.description)
        if k not in seen:
            seen.add(k)
            fresh.append(e)
    if fresh:
        with rt.telemetry.transaction() as w:
            w.changes(space, frame(fresh))
    rt.state.audit(f"{kind} (signed)", "changes", space_id=space, target=kind,
                   detail={"changes": len(fresh), "duplicates": len(events) - len(fresh),
                           "resources": sorted({e.resource for e in fresh})[:20]})
    return fresh


async def _accept(request: Request, space: str, kind: str, events: list[ChangeEvent], note: str):
    if events:
        stored = await run_in_threadpool(_store, request, space, kind, events)
        if len(stored) < len(events):
            note = (note + "; " if note else "") + f"{len(events) - len(stored)} already recorded (a redelivery)"
        events = stored
    _rt(request).metrics.webhooks.labels(kind).inc()
    return JSONResponse(ChangesAccepted(accepted=len(events), changes=[e.as_dict() for e in events], note=note)
                        .model_dump(), status_code=202)


def _rejected(request: Request, kind: str, exc: WebhookRejected) -> None:
    _rt(request).metrics.webhook_rejections.labels(kind, exc.reason).inc()


@router.post("/v1/spaces/{space}/webhooks/github", response_model=ChangesAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_BODY,
             summary="GitHub deployment, deployment_status and workflow_run events as changes "
                     "(X-Hub-Signature-256 verified)")
async def webhook_github(request: Request, space: SpacePath):
    body = await request.body()
    try:
        config, secret = await run_in_threadpool(signed_integration, request, space, "github")
        github.verify(body, request.headers.get(github.SIGNATURE), secret)
        events, note = github.parse(request.headers.get(github.EVENT), load_json(body), config)
    except WebhookRejected as exc:
        _rejected(request, "github", exc)
        raise
    return await _accept(request, space, "github", events, note)


@router.post("/v1/spaces/{space}/webhooks/gitlab", response_model=ChangesAccepted, status_code=202,
             tags=["webhooks"], openapi_extra=_BODY,
             summary="GitLab Deployment and Pipeline hooks as changes (X-Gitlab-Token verified)")
async def webhook_gitlab(request: Request, space: SpacePath):
    body = await request.body()
    try:
        config, secret = await run_in_threadpool(signed_integration, request, space, "gitlab")
        gitlab.verify(request.headers.get(gitlab.TOKEN), secret)
        events, note = gitlab.parse(request.headers.get(gitlab.EVENT), load_json(body), config)
    except WebhookRejected as exc:
        _rejected(request, "gitlab", exc)
        raise
    return await _accept(request, space, "gitlab", events, note)
