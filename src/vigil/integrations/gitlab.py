"""GitLab project (or group) webhooks as change events: deployments and deploying pipelines.
Payloads as documented in GitLab's "Webhook events" (docs.gitlab.com/user/project/integrations/
webhook_events: "Deployment events", "Pipeline events").

Verified by ``X-Gitlab-Token``: GitLab sends the webhook's "Secret token" as it is; it is compared
in constant time with the space's gitlab secret. The event is named by ``X-Gitlab-Event``.

What becomes a change (kind ``deploy``, on the project's service, see ``changes.service_for``):
- ``Deployment Hook`` whose status is ``success``, ``failed`` or ``canceled``, at ``status_changed_at``
  (``running`` is skipped: the finished status follows);
- ``Pipeline Hook`` of a finished pipeline: one change per job that deployed to an environment
  (``builds[].environment.action == "start"``) and finished (``success`` or ``failed``), at the job's
  ``finished_at``. A pipeline without such a job is CI, not a change, and is skipped.
Enable one of the two for a project that deploys from its pipelines, or each deploy counts twice."""

from __future__ import annotations

from typing import Any

from vigil.integrations.changes import ChangeEvent, detail, obj, service_for, text, when
from vigil.integrations.common import WebhookRejected, expect, same

TOKEN = "X-Gitlab-Token"
EVENT = "X-Gitlab-Event"
EVENTS = ("Deployment Hook", "Pipeline Hook")
FINISHED = ("success", "failed", "canceled")
MAX_BUILDS = 1000


def verify(token: str | None, secret: str) -> None:
    if not token:
        raise WebhookRejected(f"missing {TOKEN} header", 401, "unsigned")
    if not same(token.strip(), secret):
        raise WebhookRejected(f"{TOKEN} does not match the space's gitlab secret", 401, "bad-signature")


def _project(payload: dict[str, Any]) -> tuple[str, str]:
    proj = obj(payload, "project")
    full = text(proj.get("path_with_namespace"), 300)
    expect(bool(full), "project.path_with_namespace is required")
    return full, full.rsplit("/", 1)[-1]


def _user(payload: dict[str, Any]) -> str:
    u = payload.get("user")
    return text(u.get("username") or u.get("name"), 100) if isinstance(u, dict) else ""


def parse(event: str | None, payload: Any, config: dict[str, Any]) -> tuple[list[ChangeEvent], str]:
    """(change events, note). The note says why nothing was stored, when nothing was."""
    event = (event or "").strip()
    expect(bool(event), f"missing {EVENT} header")
    if event not in EVENTS:
        return [], f"event {event[:40]!r} is not used (send {', '.join(EVENTS)})"
    expect(isinstance(payload, dict), "the body must be a JSON object")
    services = config.get("services") or {}
    full, name = _project(payload)
    if event == "Deployment Hook":
        expect(payload.get("object_kind") == "deployment", "a Deployment Hook has object_kind 'deployment'")
        status = text(payload.get("status"), 40)
        expect(bool(status), "status is required")
        if status not in FINISHED:
            return [], f"deployment status {status!r} is not a finished deployment"
        env = text(payload.get("environment"), 100)
        desc = (f"GitLab deployment {payload.get('deployment_id')} of {full} {text(payload.get('short_sha'), 12)} "
                f"to {env or 'an environment'}: {status}")
        if payload.get("commit_title"):
            desc += f" ({text(payload.get('commit_title'), 140)})"
        return [ChangeEvent(service_for(services, full, name, env), when(payload.get("status_changed_at"),
                                                                         "status_changed_at"),
                            "deploy", text(desc), _user(payload),
                            detail(source="gitlab", project=full, deployment_id=payload.get("deployment_id")
                                   if isinstance(payload.get("deployment_id"), int) else None,
                                   sha=payload.get("commit_url", "").rsplit("/", 1)[-1]
                                   if isinstance(payload.get("commit_url"), str) else payload.get("short_sha"),
                                   ref=payload.get("ref"), environment=env, state=status))], ""
    expect(payload.get("object_kind") == "pipeline", "a Pipeline Hook has object_kind 'pipeline'")
    attrs = obj(payload, "object_attributes")
    status = text(attrs.get("status"), 40)
    if status not in FINISHED:
        return [], f"pipeline status {status!r} is not finished"
    builds = payload.get("builds") or []
    expect(isinstance(builds, list) and len(builds) <= MAX_BUILDS, f"builds must be a list of at most {MAX_BUILDS}")
    out = []
    for i, b in enumerate(builds):
        expect(isinstance(b, dict), f"builds[{i}] must be an object")
        env = b.get("environment")
        if not isinstance(env, dict) or env.get("action", "start") != "start":
            continue
        bstatus = text(b.get("status"), 40)
        if bstatus not in ("success", "failed"):
            continue
        env_name = text(env.get("name"), 100)
        desc = (f"GitLab pipeline {attrs.get('id')} job {text(b.get('name'), 100)!r} deployed {full} "
                f"{text(attrs.get('ref'), 100)}@{text(attrs.get('sha'), 12)} to {env_name}: {bstatus}")
        user = b.get("user") if isinstance(b.get("user"), dict) else payload.get("user")
        out.append(ChangeEvent(service_for(services, full, name, env_name),
                               when(b.get("finished_at") or attrs.get("finished_at"), f"builds[{i}].finished_at"),
                               "deploy", text(desc),
                               text(user.get("username") or user.get("name"), 100) if isinstance(user, dict) else "",
                               detail(source="gitlab", project=full, pipeline_id=attrs.get("id")
                                      if isinstance(attrs.get("id"), int) else None, sha=attrs.get("sha"),
                                      ref=attrs.get("ref"), environment=env_name, state=bstatus)))
    if not out:
        return [], "the pipeline has no finished job that deployed to an environment"
    return out, ""
