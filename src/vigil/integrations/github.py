"""GitHub repository (or organization) webhooks as change events: deployments, their statuses, and
completed deploy workflow runs. Payloads as documented in GitHub's "Webhook events and payloads"
(docs.github.com/en/webhooks/webhook-events-and-payloads: ``deployment``, ``deployment_status``,
``workflow_run``).

Verified by ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the webhook's
secret>`` (the webhook's "Secret" field in GitHub). The event is named by the ``X-GitHub-Event``
header; ``ping`` (sent when the webhook is created) and events Vigil does not use are acknowledged
without storing anything, so GitHub does not mark the hook as failing.

What becomes a change (kind ``deploy``, on the service of the repository, see ``changes.service_for``):
- ``deployment`` (action ``created``): a deployment was requested, at ``deployment.created_at``;
- ``deployment_status`` whose state is ``success``, ``failure`` or ``error``: it finished, at the
  status's ``created_at`` (``pending``, ``queued``, ``in_progress`` and ``inactive`` are skipped: the
  ``deployment`` event already marked the start);
- ``workflow_run`` (action ``completed``) of a workflow whose name or path matches the integration's
  ``workflows`` globs (default ``*deploy*``, ``*release*``, ``*rollout*``), at the run's ``updated_at``."""

from __future__ import annotations

from typing import Any

from vigil.integrations.changes import (
    ChangeEvent,
    changed_keys,
    detail,
    matches,
    obj,
    service_for,
    text,
    when,
)
from vigil.integrations.common import WebhookRejected, expect, hmac_sha256_hex, same

SIGNATURE = "X-Hub-Signature-256"
EVENT = "X-GitHub-Event"
EVENTS = ("deployment", "deployment_status", "workflow_run")
DEPLOY_WORKFLOWS = ["*deploy*", "*release*", "*rollout*"]
FINISHED = ("success", "failure", "error")


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The signature header GitHub sends (for tests and scripts)."""
    return {SIGNATURE: "sha256=" + hmac_sha256_hex(secret, body)}


def verify(body: bytes, signature: str | None, secret: str) -> None:
    if not signature:
        raise WebhookRejected(f"missing {SIGNATURE} header", 401, "unsigned")
    if not same(signature.strip(), "sha256=" + hmac_sha256_hex(secret, body)):
        raise WebhookRejected(f"{SIGNATURE} does not match the body", 401, "bad-signature")


def _repo(payload: dict[str, Any]) -> tuple[str, str]:
    repo = obj(payload, "repository")
    full, name = text(repo.get("full_name"), 200), text(repo.get("name"), 200)
    expect(bool(full or name), "repository.full_name or repository.name is required")
    return full, name


def _login(user: Any) -> str:
    return text(user.get("login"), 100) if isinstance(user, dict) else ""


def _detail(repo: str, dep: dict[str, Any], env: str, state: str = "") -> str:
    payload = dep.get("payload") if isinstance(dep.get("payload"), dict) else {}
    return detail(source="github", repository=repo, deployment_id=dep.get("id") if isinstance(dep.get("id"), int)
                  else text(dep.get("id"), 40), ref=dep.get("ref"), sha=dep.get("sha"), environment=env,
                  state=state, keys=changed_keys(payload), previous_sha=payload.get("previous_sha"))


def parse(event: str | None, payload: Any, config: dict[str, Any]) -> tuple[list[ChangeEvent], str]:
    """(change events, note). The note says why nothing was stored, when nothing was."""
    event = (event or "").strip()
    expect(bool(event), f"missing {EVENT} header")
    if event == "ping":
        return [], "ping acknowledged"
    if event not in EVENTS:
        return [], f"event {event[:40]!r} is not used (send {', '.join(EVENTS)})"
    expect(isinstance(payload, dict), "the body must be a JSON object")
    services = config.get("services") or {}
    full, name = _repo(payload)
    if event == "deployment":
        dep = obj(payload, "deployment")
        if payload.get("action", "created") != "created":
            return [], f"deployment action {text(payload.get('action'), 40)!r} is not used"
        env = text(dep.get("environment"), 100)
        what = f"{text(dep.get('ref'), 100)}@{text(dep.get('sha'), 12)}"
        desc = f"GitHub deployment {dep.get('id')} of {full or name} {what} to {env or 'an environment'} requested"
        if dep.get("description"):
            desc += f": {text(dep.get('description'), 140)}"
        return [ChangeEvent(service_for(services, full, name, env), when(dep.get("created_at"), "deployment.created_at"),
                            "deploy", text(desc), _login(dep.get("creator")), _detail(full or name, dep, env))], ""
    if event == "deployment_status":
        st = obj(payload, "deployment_status")
        dep = obj(payload, "deployment")
        state = text(st.get("state"), 40)
        expect(bool(state), "deployment_status.state is required")
        if state not in FINISHED:
            return [], f"deployment state {state!r} is not a finished deployment"
        env = text(st.get("environment") or dep.get("environment"), 100)
        what = f"{text(dep.get('ref'), 100)}@{text(dep.get('sha'), 12)}"
        desc = f"GitHub deployment {dep.get('id')} of {full or name} {what} to {env or 'an environment'}: {state}"
        if st.get("description"):
            desc += f" ({text(st.get('description'), 140)})"
        return [ChangeEvent(service_for(services, full, name, env),
                            when(st.get("created_at"), "deployment_status.created_at"), "deploy", text(desc),
                            _login(st.get("creator")) or _login(dep.get("creator")),
                            _detail(full or name, dep, env, state))], ""
    run = obj(payload, "workflow_run")
    if payload.get("action") != "completed":
        return [], f"workflow_run action {text(payload.get('action'), 40)!r} is not used (only completed)"
    wf = payload.get("workflow") if isinstance(payload.get("workflow"), dict) else {}
    names = [text(run.get("name"), 200), text(wf.get("name"), 200), text(run.get("path") or wf.get("path"), 300)]
    globs = config.get("workflows") or DEPLOY_WORKFLOWS
    if not any(n and matches(n, globs) for n in names):
        return [], f"workflow {next((n for n in names if n), '?')!r} is not a deploy workflow ({', '.join(globs)})"
    label = next((n for n in names if n), "workflow")
    desc = (f"GitHub workflow {label!r} run {run.get('run_number', run.get('id'))} on "
            f"{text(run.get('head_branch'), 100)}@{text(run.get('head_sha'), 12)}: "
            f"{text(run.get('conclusion'), 40) or 'completed'}")
    return [ChangeEvent(service_for(services, full, name), when(run.get("updated_at") or run.get("created_at"),
                                                                   "workflow_run.updated_at"),
                        "deploy", text(desc), _login(run.get("triggering_actor")) or _login(run.get("actor"))
                        or _login(payload.get("sender")))], ""
