"""Spaces, tokens, sources, webhook integrations and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from vigil.api.auth import Admin, IdPath, Operator, Principal, SpacePath, Viewer, need_own_space
from vigil.api.errors import ERROR_RESPONSES, ApiError
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
from vigil.errors import InputError
from vigil.integrations import KINDS
from vigil.model import AgentSpace, ApiToken, Role, Topology
from vigil.sources import registry

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
SourceName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
IntegrationKind = Annotated[str, Path(pattern="^(" + "|".join(KINDS) + ")$")]


def _rt(request: Request):
    return request.app.state.runtime


@router.get("/spaces", response_model=list[AgentSpace], tags=["spaces"],
            summary="The spaces this token can see (its own)")
def list_spaces(request: Request, who: Annotated[Principal, need_own_space(Role.VIEWER)]):
    return [_rt(request).state.get_space(who.space)]


@router.get("/spaces/{space}", response_model=AgentSpace, tags=["spaces"])
def get_space(request: Request, space: SpacePath, who: Viewer):
    return _rt(request).state.get_space(space)


@router.patch("/spaces/{space}", response_model=AgentSpace, tags=["spaces"],
              summary="Change a space's description, scope, policies or alert grouping")
def patch_space(request: Request, space: SpacePath, body: SpacePatch, who: Admin):
    st = _rt(request).state
    current = st.get_space(space)
    changes = body.model_dump(exclude_none=True)
    updated = AgentSpace.model_validate({**current.model_dump(), **changes})
    st.put_space(updated)
    st.audit(who.actor, "space-update", space_id=space, target=space, detail={"fields": sorted(changes)})
    return st.get_space(space)


# -- tokens ---------------------------------------------------------------------------------------
@router.get("/spaces/{space}/tokens", response_model=list[ApiToken], tags=["tokens"])
def list_tokens(request: Request, space: SpacePath, who: Admin):
    return _rt(request).state.list_tokens(space)


@router.post("/spaces/{space}/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"],
             summary="Create a token for this space (the secret is in the answer, once)")
def create_token(request: Request, space: SpacePath, body: TokenCreate, who: Admin):
    st = _rt(request).state
    secret, tok = st.create_token(space, body.role, name=body.name, created_by=who.actor)
    st.audit(who.actor, "token-create", space_id=space, target=tok.id, detail={"role": tok.role.value})
    return TokenCreated(**tok.model_dump(), token=secret)


@router.delete("/spaces/{space}/tokens/{token_id}", response_model=ApiToken, tags=["tokens"])
def revoke_token(request: Request, space: SpacePath, token_id: IdPath, who: Admin):
    rt = _rt(request)
    tok = rt.state.revoke_token(token_id, space_id=space)
    rt.tokens.clear()
    rt.state.audit(who.actor, "token-revoke", space_id=space, target=token_id)
    return tok


# -- sources --------------------------------------------------------------------------------------
@router.get("/spaces/{space}/sources", response_model=list[SourceOut], tags=["sources"],
            summary="The space's telemetry sources: the embedded store (with what it holds) and OTLP settings")
def list_sources(request: Request, space: SpacePath, who: Viewer):
    rt = _rt(request)
    extent = rt.telemetry.extent(space)
    out = [SourceOut(name="embedded", kind="embedded", counts=rt.telemetry.counts(space),
                     extent=list(extent) if extent else None)]
    out += [SourceOut(**s) for s in rt.state.list_sources(space)]
    return out


@router.put("/spaces/{space}/sources/{name}", response_model=SourceOut, tags=["sources"],
            summary="Register a source (its config is validated and its backend checked before it is stored)")
def put_source(request: Request, space: SpacePath, name: SourceName, body: SourceIn, who: Admin,
               check: Annotated[bool, Query(description="Reach the backend before storing (default).")] = True):
    if name == "embedded":
        raise ApiError(400, "'embedded' is the built-in store; choose another name")
    rt = _rt(request)
    rt.state.get_space(space)
    try:
        config = registry.normalize(body.kind, body.config)
        registry.guard_host_access(body.kind, config)      # a space admin does not reach the Vigil host
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
    result = registry.check(name, body.kind, config) if check else None
    if result is not None and not result.ok:
        raise ApiError(422, f"source {name!r} failed its check, nothing stored: {result.message}")
    out = rt.state.put_source(space, name, body.kind, config, (result.ok, result.message) if result else None)
    rt.sources_changed(space)
    rt.state.audit(who.actor, "source-put", space_id=space, target=name,
                   detail={"kind": body.kind, "checked": result is not None})
    return SourceOut(**out, check=result.message if result else None)


@router.post("/spaces/{space}/sources/{name}/check", response_model=SourceCheckOut, tags=["sources"],
             summary="Check a stored source's backend again and record the outcome (ok is false if it failed)")
def check_source(request: Request, space: SpacePath, name: SourceName, who: Operator):
    rt = _rt(request)
    src = rt.state.get_source(space, name)
    try:
        result = registry.check(name, src["kind"], src["config"])
    except InputError as exc:       # a row stored by an older version that no longer validates
        result = registry.CheckResult(False, str(exc))
    rt.state.record_source_check(space, name, result.ok, result.message, result.at)
    rt.state.audit(who.actor, "source-check", space_id=space, target=name, detail={"ok": result.ok})
    return SourceCheckOut(name=name, kind=src["kind"], **result.as_dict())


@router.get("/spaces/{space}/topology", response_model=Topology, tags=["sources"],
            summary="Resources and edges, each edge with the source it was learned from (store and connectors)")
def topology(request: Request, space: SpacePath, who: Viewer):
    rt = _rt(request)
    rt.state.get_space(space)
    return rt.app.sources.topology(space)


@router.delete("/spaces/{space}/sources/{name}", status_code=204, tags=["sources"])
def delete_source(request: Request, space: SpacePath, name: SourceName, who: Admin):
    rt = _rt(request)
    rt.state.delete_source(space, name)
    rt.sources_changed(space)
    rt.state.audit(who.actor, "source-delete", space_id=space, target=name)


# -- webhook integrations -------------------------------------------------------------------------
@router.get("/spaces/{space}/integrations", response_model=list[IntegrationOut], tags=["integrations"])
def list_integrations(request: Request, space: SpacePath, who: Admin):
    return _rt(request).state.list_integrations(space)


@router.put("/spaces/{space}/integrations/{kind}", response_model=IntegrationOut, tags=["integrations"],
            summary="Configure a signed webhook trigger (pagerduty, sns, generic, grafana, github, gitlab)")
def put_integration(request: Request, space: SpacePath, kind: IntegrationKind, body: IntegrationIn, who: Admin):
    if kind == "alertmanager":
        raise ApiError(400, "Alertmanager authenticates with a space token (http_config.authorization); "
                            "there is nothing to configure")
    if body.secret and body.secret_env:
        raise ApiError(400, "give either secret or secret_env, not both")
    if kind in ("pagerduty", "generic", "grafana", "github", "gitlab") and not (body.secret or body.secret_env):
        raise ApiError(400, f"a {kind} integration needs a secret (or secret_env)")
    if kind == "sns" and not body.config.topic_arns:
        raise ApiError(400, "an sns integration needs config.topic_arns: the topics the space accepts")
    config = body.config.model_dump(exclude_defaults=True)
    if body.secret_env:
        try:
            registry.check_secret_env(body.secret_env, "secret_env")   # the rule sources follow
        except InputError as exc:
            raise ApiError(422, str(exc)) from None
        config["secret_env"] = body.secret_env
    rt = _rt(request)
    rt.state.put_integration(space, kind, config, body.secret)
    rt.state.audit(who.actor, "integration-put", space_id=space, target=kind)     # never the secret
    return next(i for i in rt.state.list_integrations(space) if i["kind"] == kind)


@router.delete("/spaces/{space}/integrations/{kind}", status_code=204, tags=["integrations"])
def delete_integration(request: Request, space: SpacePath, kind: IntegrationKind, who: Admin):
    rt = _rt(request)
    rt.state.delete_integration(space, kind)
    rt.state.audit(who.actor, "integration-delete", space_id=space, target=kind)


# -- audit ----------------------------------------------------------------------------------------
@router.get("/spaces/{space}/audit", response_model=list[AuditEntry], tags=["audit"],
            summary="Who did what in this space, newest first (append-only)")
def audit_log(request: Request, space: SpacePath, who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    return _rt(request).state.audit_log(space, limit=limit)
