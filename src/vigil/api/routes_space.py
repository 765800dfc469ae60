"""Spaces, tokens, sources, webhook integrations and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from vigil.api.auth import Admin, IdPath, Operator, Principal, SpacePath, Viewer, need_own_space
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.schemas import (
    AuditEntry,
    IntegrationIn,
    IntegrationOut,
    SourceCheckOut,
    SourceIn,
    SourceOut,
    SpacePatch,
    TokenCreate,
    TokenCreated,
)
from vigil.integrations import KINDS
from vigil.model import AgentSpace, ApiToken, Role, Topology

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
SourceName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
IntegrationKind = Annotated[str, Path(pattern="^(" + "|".join(KINDS) + ")$")]


def _svc(request: Request):
    return request.app.state.runtime.services


@router.get("/spaces", response_model=list[AgentSpace], tags=["spaces"],
            summary="The spaces this token can see (its own)")
def list_spaces(request: Request, who: Annotated[Principal, need_own_space(Role.VIEWER)]):
    return [_svc(request).spaces.get(who.space)]


@router.get("/spaces/{space}", response_model=AgentSpace, tags=["spaces"])
def get_space(request: Request, space: SpacePath, who: Viewer):
    return _svc(request).spaces.get(space)


@router.patch("/spaces/{space}", response_model=AgentSpace, tags=["spaces"],
              summary="Change a space's description, scope, policies or alert grouping")
def patch_space(request: Request, space: SpacePath, body: SpacePatch, who: Admin):
    return _svc(request).spaces.update(space, body.model_dump(exclude_none=True), who.actor)


# -- tokens ---------------------------------------------------------------------------------------
@router.get("/spaces/{space}/tokens", response_model=list[ApiToken], tags=["tokens"])
def list_tokens(request: Request, space: SpacePath, who: Admin):
    return _svc(request).tokens.list(space)


@router.post("/spaces/{space}/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"],
             summary="Create a token for this space (the secret is in the answer, once)")
def create_token(request: Request, space: SpacePath, body: TokenCreate, who: Admin):
    secret, tok = _svc(request).tokens.create(space, body.role, body.name, who.actor)
    return TokenCreated(**tok.model_dump(), token=secret)


@router.delete("/spaces/{space}/tokens/{token_id}", response_model=ApiToken, tags=["tokens"])
def revoke_token(request: Request, space: SpacePath, token_id: IdPath, who: Admin):
    return _svc(request).tokens.revoke(token_id, who.actor, space=space)


# -- sources --------------------------------------------------------------------------------------
@router.get("/spaces/{space}/sources", response_model=list[SourceOut], tags=["sources"],
            summary="The space's telemetry sources: the embedded store (with what it holds) and OTLP settings")
def list_sources(request: Request, space: SpacePath, who: Viewer):
    svc = _svc(request).sources
    embedded = svc.embedded(space)
    out = [SourceOut(name="embedded", kind="embedded", counts=embedded["counts"], extent=embedded["extent"])]
    out += [SourceOut(**s) for s in svc.list(space)]
    return out


@router.put("/spaces/{space}/sources/{name}", response_model=SourceOut, tags=["sources"],
            summary="Register a source (its config is validated and its backend checked before it is stored)")
def put_source(request: Request, space: SpacePath, name: SourceName, body: SourceIn, who: Admin,
               check: Annotated[bool, Query(description="Reach the backend before storing (default).")] = True):
    out, result = _svc(request).sources.put(space, name, body.kind, body.config, who.actor, check=check)
    return SourceOut(**out, check=result.message if result else None)


@router.post("/spaces/{space}/sources/{name}/check", response_model=SourceCheckOut, tags=["sources"],
             summary="Check a stored source's backend again and record the outcome (ok is false if it failed)")
def check_source(request: Request, space: SpacePath, name: SourceName, who: Operator):
    src, result = _svc(request).sources.check(space, name, who.actor)
    return SourceCheckOut(name=name, kind=src["kind"], **result.as_dict())


@router.get("/spaces/{space}/topology", response_model=Topology, tags=["sources"],
            summary="Resources and edges, each edge with the source it was learned from (store and connectors)")
def topology(request: Request, space: SpacePath, who: Viewer):
    return _svc(request).sources.topology(space)


@router.delete("/spaces/{space}/sources/{name}", status_code=204, tags=["sources"])
def delete_source(request: Request, space: SpacePath, name: SourceName, who: Admin):
    _svc(request).sources.delete(space, name, who.actor)


# -- webhook integrations -------------------------------------------------------------------------
@router.get("/spaces/{space}/integrations", response_model=list[IntegrationOut], tags=["integrations"])
def list_integrations(request: Request, space: SpacePath, who: Admin):
    return _svc(request).integrations.list(space)


@router.put("/spaces/{space}/integrations/{kind}", response_model=IntegrationOut, tags=["integrations"],
            summary="Configure a signed webhook trigger (pagerduty, sns, generic, grafana, github, gitlab)")
def put_integration(request: Request, space: SpacePath, kind: IntegrationKind, body: IntegrationIn, who: Admin):
    return _svc(request).integrations.put(space, kind, body.config.model_dump(exclude_defaults=True), body.secret,
                                          body.secret_env, who.actor)


@router.delete("/spaces/{space}/integrations/{kind}", status_code=204, tags=["integrations"])
def delete_integration(request: Request, space: SpacePath, kind: IntegrationKind, who: Admin):
    _svc(request).integrations.delete(space, kind, who.actor)


# -- audit ----------------------------------------------------------------------------------------
@router.get("/spaces/{space}/audit", response_model=list[AuditEntry], tags=["audit"],
            summary="Who did what in this space, newest first (append-only)")
def audit_log(request: Request, space: SpacePath, who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    return _svc(request).audit.log(space, limit=limit)
