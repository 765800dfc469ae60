"""Respond and prevent over the API: mitigation specs, action and notifier settings, directed actions
(propose, approve, run), chat, steered reruns, the post-incident report, the prevention backlog, skills,
the outbox, and Slack's signed interactivity and events. Every route calls ``runtime.respond`` (the one
place each of these happens), as the console, Slack and MCP do."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vigil.api.auth import Admin, IdPath, Operator, SpacePath, Viewer
from vigil.api.errors import ERROR_RESPONSES, ApiError
from vigil.respond import postmortem, prevention
from vigil.respond.actions import ACTIONS
from vigil.respond.chat import Answer
from vigil.respond.notify import NOTIFIERS
from vigil.respond.skills import SkillIn, valid_name
from vigil.respond.spec import MitigationSpec, to_markdown

router = APIRouter(prefix="/v1/spaces/{space}", responses=ERROR_RESPONSES)
ActionKind = Annotated[str, Path(pattern="^(" + "|".join(ACTIONS) + ")$")]
NotifierKind = Annotated[str, Path(pattern="^(" + "|".join(NOTIFIERS) + ")$")]
SkillName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SettingIn(Strict):
    enabled: bool = Field(description="Off by default: a space opts in per kind.")
    config: dict[str, Any] = Field(default_factory=dict, description="The kind's settings; credentials as "
                                                                      "{\"env\": NAME} or {\"file\": PATH} only.")


class SettingOut(BaseModel):
    kind: str
    title: str = ""
    enabled: bool
    configured: bool = True
    config: dict[str, Any] = Field(default_factory=dict)


class ProposeIn(Strict):
    kind: str = Field(pattern="^(" + "|".join(ACTIONS) + ")$")
    args: dict[str, Any] = Field(default_factory=dict)
    hypothesis_id: str = Field(default="", max_length=80)


class ActionOut(BaseModel):
    id: str
    space_id: str
    investigation_id: str
    hypothesis_id: str
    kind: str
    args: dict[str, Any]
    args_hash: str
    summary: str
    status: str
    proposed_by: str
    approved_by: str
    created_at: datetime
    approved_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    verify: dict[str, Any] = Field(default_factory=dict)
    recovery: dict[str, Any] = Field(default_factory=dict)
    error: str = ""


class Approval(BaseModel):
    token: str = Field(description="Single use, bound to this action and its exact arguments; shown once.")
    expires_in_s: float
    action: ActionOut


class RunIn(Strict):
    token: str = Field(min_length=10, max_length=200)


class ChatIn(Strict):
    question: str = Field(min_length=1, max_length=500)


class RerunIn(Strict):
    focus: list[str] = Field(default_factory=list, max_length=20)
    exclude: list[str] = Field(default_factory=list, max_length=20)


class BacklogPatch(Strict):
    status: Literal["open", "planned", "done", "dismissed"]
    note: str | None = Field(default=None, max_length=2000)


def _rt(request: Request):
    return request.app.state.runtime


def _svc(request: Request):
    return _rt(request).respond


# -- mitigation specs ---------------------------------------------------------------------------------
@router.get("/investigations/{inv_id}/mitigation", tags=["respond"], response_model=list[MitigationSpec],
            responses={200: {"content": {"application/json": {}, "text/markdown": {}}}},
            summary="Mitigation specs of the leading hypotheses (JSON, or Markdown with format=md)")
def mitigation(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer,
               format: Literal["json", "md"] = "json", limit: Annotated[int, Query(ge=1, le=10)] = 3):  # noqa: A002
    specs = _svc(request).specs(space, inv_id, limit)
    if format == "md":
        return Response("\n".join(to_markdown(s) for s in specs), media_type="text/markdown; charset=utf-8")
    return specs


# -- settings ---------------------------------------------------------------------------------------
@router.get("/action-settings", response_model=list[SettingOut], tags=["respond"],
            summary="Every action kind, whether this space turned it on, and its config")
def action_settings(request: Request, space: SpacePath, who: Admin):
    return _svc(request).action_settings(space)


@router.put("/action-settings/{kind}", response_model=SettingOut, tags=["respond"],
            summary="Turn an action kind on or off for this space, with its config (validated)")
def put_action_setting(request: Request, space: SpacePath, kind: ActionKind, body: SettingIn, who: Admin):
    svc = _svc(request)
    svc.set_action(space, kind, body.enabled, body.config, who.actor)
    return next(s for s in svc.action_settings(space) if s["kind"] == kind)


@router.get("/notifier-settings", response_model=list[SettingOut], tags=["respond"],
            summary="Every notifier (Slack, PagerDuty, ServiceNow, Jira, GitHub, webhook) and its settings")
def notifier_settings(request: Request, space: SpacePath, who: Admin):
    return _svc(request).notifier_settings(space)


@router.put("/notifier-settings/{kind}", response_model=SettingOut, tags=["respond"],
            summary="Turn a notifier on or off for this space, with its config (validated)")
def put_notifier_setting(request: Request, space: SpacePath, kind: NotifierKind, body: SettingIn, who: Admin):
    svc = _svc(request)
    svc.set_notifier(space, kind, body.enabled, body.config, who.actor)
    return next(s for s in svc.notifier_settings(space) if s["kind"] == kind)


@router.put("/model-settings", response_model=SettingOut, tags=["respond"],
            summary="An OpenAI-compatible endpoint for free-form chat questions (off by default)")
def put_model_setting(request: Request, space: SpacePath, body: SettingIn, who: Admin):
    out = _svc(request).set_model(space, body.enabled, body.config, who.actor)
    return SettingOut(kind="openai", title="OpenAI-compatible chat model", enabled=out["enabled"],
                      config=out["config"])


@router.get("/outbox", tags=["respond"], summary="Outgoing updates and their delivery (newest last)")
def outbox(request: Request, space: SpacePath, who: Admin, investigation: str | None = Query(None, max_length=80)):
    return [{k: v for k, v in o.items() if k != "payload"} | {"title": o["payload"].get("title", "")}
            for o in _svc(request).outbox(space, investigation)]


# -- actions ----------------------------------------------------------------------------------------
@router.get("/investigations/{inv_id}/actions", response_model=list[ActionOut], tags=["respond"])
def list_actions(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer):
    return _svc(request).actions(space, inv_id)


@router.post("/investigations/{inv_id}/actions", response_model=ActionOut, status_code=201, tags=["respond"],
             summary="Propose a directed action (runs nothing: an operator approves it)")
def propose_action(request: Request, space: SpacePath, inv_id: IdPath, body: ProposeIn, who: Operator):
    return _svc(request).propose(space, inv_id, body.kind, body.args, who.actor, body.hypothesis_id)


@router.get("/actions/{action_id}", response_model=ActionOut, tags=["respond"])
def get_action(request: Request, space: SpacePath, action_id: IdPath, who: Viewer):
    return _svc(request).action(space, action_id)


@router.post("/actions/{action_id}/approve", response_model=Approval, tags=["respond"],
             summary="Approve a proposed action: mints a single-use, short-lived token bound to it")
def approve_action(request: Request, space: SpacePath, action_id: IdPath, who: Operator):
    svc = _svc(request)
    token, a = svc.approve(space, action_id, who.actor)
    return Approval(token=token, expires_in_s=svc.ttl, action=ActionOut(**a))


@router.post("/actions/{action_id}/run", response_model=ActionOut, tags=["respond"],
             summary="Run an approved action once with its token; recovery is then checked by the spec's verify step")
def run_action(request: Request, space: SpacePath, action_id: IdPath, body: RunIn, who: Operator):
    return _svc(request).run(space, action_id, body.token, who.actor)


# -- chat and reruns ----------------------------------------------------------------------------------
@router.post("/investigations/{inv_id}/chat", response_model=Answer, tags=["respond"],
             summary="Ask about an investigation (answers cite journal entries; steering needs an operator)")
def chat(request: Request, space: SpacePath, inv_id: IdPath, body: ChatIn, who: Viewer):
    from vigil.model import Role
    return _svc(request).ask(space, inv_id, body.question, who.actor, who.token.role.allows(Role.OPERATOR))


@router.post("/investigations/{inv_id}/rerun", status_code=202, tags=["respond"],
             summary="Rerun the investigation steered: focus on or exclude services")
def rerun(request: Request, space: SpacePath, inv_id: IdPath, body: RerunIn, who: Operator):
    if not body.focus and not body.exclude:
        raise ApiError(400, "say what to focus on or exclude")
    new = _svc(request).rerun(space, inv_id, body.focus, body.exclude, who.actor)
    return {"id": new.id, "status": new.status.value, "steering": new.trigger.steering.model_dump(mode="json")}


# -- post-incident report ---------------------------------------------------------------------------
_MEDIA = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf",
          "json": "application/json"}


@router.get("/investigations/{inv_id}/postmortem", tags=["respond"],
            responses={200: {"content": {m.split(";")[0]: {} for m in _MEDIA.values()}}},
            summary="The post-incident report: timeline, impact, root cause and evidence, actions, recommendations")
def get_postmortem(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer,
                   format: Literal["md", "html", "pdf", "json"] = "md"):  # noqa: A002
    data = postmortem.gather(_svc(request), space, inv_id)
    body = postmortem.render(data, format)
    headers = {"Content-Disposition": f'attachment; filename="postmortem-{inv_id}.pdf"'} if format == "pdf" else {}
    return Response(body, media_type=_MEDIA[format], headers=headers)


# -- prevention backlog -----------------------------------------------------------------------------
@router.get("/prevention", tags=["respond"], summary="The prevention backlog, ranked by severity × likelihood × "
                                                     "detectability")
def get_backlog(request: Request, space: SpacePath, who: Viewer, status: str | None = Query(None, max_length=20)):
    return _svc(request).backlog(space, status)


@router.post("/prevention/refresh", tags=["respond"],
             summary="Analyse the space's investigations again and update the backlog (statuses are kept)")
def refresh_backlog(request: Request, space: SpacePath, who: Operator):
    return prevention.refresh(_svc(request), space, who.actor)


@router.patch("/prevention/{item_id}", tags=["respond"], summary="Set a backlog item's status (and a note)")
def patch_backlog(request: Request, space: SpacePath, item_id: IdPath, body: BacklogPatch, who: Operator):
    return _svc(request).set_backlog_status(space, item_id, body.status, body.note, who.actor)


# -- skills -----------------------------------------------------------------------------------------
@router.get("/skills", tags=["respond"], summary="Runbooks and standing instructions attached to the space")
def list_skills(request: Request, space: SpacePath, who: Viewer):
    return _svc(request).skills(space)


@router.put("/skills/{name}", tags=["respond"], summary="Attach or replace a runbook (Markdown) or instruction")
def put_skill(request: Request, space: SpacePath, name: SkillName, body: SkillIn, who: Admin):
    if not valid_name(name):
        raise ApiError(400, "a skill name is 1-63 characters of a-z, 0-9, '_', '.', '-'")
    return _svc(request).put_skill(space, name, body.title, body.body, body.match.model_dump(mode="json"),
                                         body.always, who.actor)


@router.delete("/skills/{name}", status_code=204, tags=["respond"])
def delete_skill(request: Request, space: SpacePath, name: SkillName, who: Admin):
    _svc(request).delete_skill(space, name, who.actor)


# -- Slack (signed by Slack, not by a token) ----------------------------------------------------------
@router.post("/slack/interactivity", tags=["webhooks"],
             summary="Slack interactivity (buttons, the note form), verified by Slack's v0 request signature")
async def slack_interactivity(request: Request, space: SpacePath):
    from vigil.respond import slack_in
    body = await request.body()
    rt = _rt(request)
    out = await run_in_threadpool(slack_in.interactivity, rt.respond, rt.judge, space, body, request.headers)
    return JSONResponse(out)


@router.post("/slack/events", tags=["webhooks"],
             summary="Slack Events API (thread replies are chat questions), verified by Slack's v0 request signature")
async def slack_events(request: Request, space: SpacePath):
    from vigil.respond import slack_in
    body = await request.body()
    if request.headers.get("x-slack-retry-num"):
        # Slack retries an event it thinks was not acknowledged; the first delivery answered it
        return JSONResponse({"ok": True, "ignored": "retry"})
    out = await run_in_threadpool(slack_in.events, _svc(request), space, body, request.headers)
    return JSONResponse(out)


__all__ = ["router"]
