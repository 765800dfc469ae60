"""GitHub and GitLab webhooks as change events, over real HTTP to a real server on loopback.

Payloads are shaped exactly as the vendors document them: GitHub's "Webhook events and payloads"
(docs.github.com/en/webhooks/webhook-events-and-payloads; the examples are GitHub's own published
samples, as kept in octokit/webhooks payload-examples, trimmed of the URL fields Vigil does not read)
and GitLab's "Webhook events" (docs.gitlab.com/user/project/integrations/webhook_events, the "Deployment
events" and "Pipeline events" examples, verbatim apart from trimmed URL fields). Signatures are made as
the vendors make them: HMAC-SHA256 of the raw body in X-Hub-Signature-256; the secret token as-is in
X-Gitlab-Token."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
from e2e.kit import live_server

from vigil.integrations import github
from vigil.model import Role

GH_SECRET = "github-webhook-secret-0123456789"
GL_SECRET = "gitlab-secret-token-0123456789"

CODERTOCAT = {"login": "Codertocat", "id": 21031067, "node_id": "MDQ6VXNlcjIxMDMxMDY3", "type": "User",
              "site_admin": False}
HELLO_WORLD = {"id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": "Hello-World",
               "full_name": "Codertocat/Hello-World", "private": False, "owner": CODERTOCAT,
               "html_url": "https://github.com/Codertocat/Hello-World", "default_branch": "master"}
DEPLOYMENT = {
    "url": "https://api.github.com/repos/Codertocat/Hello-World/deployments/145988746", "id": 145988746,
    "node_id": "MDEwOkRlcGxveW1lbnQxNDU5ODg3NDY=", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
    "ref": "master", "task": "deploy", "payload": {}, "original_environment": "production",
    "environment": "production", "description": None, "creator": CODERTOCAT,
    "created_at": "2019-05-15T15:20:53Z", "updated_at": "2019-05-15T15:20:55Z",
    "statuses_url": "https://api.github.com/repos/Codertocat/Hello-World/deployments/145988746/statuses",
    "repository_url": "https://api.github.com/repos/Codertocat/Hello-World", "performed_via_github_app": None}
GH_DEPLOYMENT = {"action": "created", "deployment": DEPLOYMENT, "repository": HELLO_WORLD, "sender": CODERTOCAT}
GH_DEPLOYMENT_STATUS = {
    "action": "created",
    "deployment_status": {
        "url": "https://api.github.com/repos/Codertocat/Hello-World/deployments/145988746/statuses/209916254",
        "id": 209916254, "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMyMDk5MTYyNTQ=", "state": "success",
        "creator": CODERTOCAT, "description": "", "environment": "production", "target_url": "",
        "created_at": "2019-05-15T15:20:55Z", "updated_at": "2019-05-15T15:20:55Z",
        "deployment_url": "https://api.github.com/repos/Codertocat/Hello-World/deployments/145988746",
        "repository_url": "https://api.github.com/repos/Codertocat/Hello-World"},
    "deployment": DEPLOYMENT, "repository": HELLO_WORLD, "sender": CODERTOCAT}
OCTO_REPO = {"id": 300029405, "name": "octo-repo", "full_name": "octo-org/octo-repo", "private": False,
             "owner": {"login": "octo-org", "id": 41548062, "type": "Organization"}, "default_branch": "master"}
GH_WORKFLOW_RUN = {
    "action": "completed",
    "repository": OCTO_REPO,
    "sender": {"login": "Codertocat", "id": 15669918, "type": "User", "site_admin": False},
    "workflow": {"id": 2823525, "name": "test", "path": ".github/workflows/test.yml", "state": "active",
                 "created_at": "2020-10-02T12:42:30.000Z", "updated_at": "2020-10-03T19:24:48.000Z"},
    "workflow_run": {
        "name": "", "check_suite_id": 1291536064, "conclusion": "success", "created_at": "2020-10-05T16:33:24Z",
        "event": "repository_dispatch", "head_branch": "master",
        "head_commit": {"author": {"email": "matfax@users.noreply.github.com", "name": "Matthias Fax"},
                        "committer": {"email": "noreply@github.com", "name": "GitHub"},
                        "id": "3484a3fb816e0859fd6e1cea078d76385ff50625",
                        "message": "build(test): check workflow run event payload",
                        "timestamp": "2020-10-05T16:32:07Z", "tree_id": "c30f6c3377009c4c91c85d1f15deb6f2b7c2eb37"},
        "head_sha": "3484a3fb816e0859fd6e1cea078d76385ff50625",
        "html_url": "https://github.com/octo-org/octo-repo/actions/runs/289782451", "id": 289782451,
        "pull_requests": [], "repository": OCTO_REPO, "run_number": 59, "status": "completed",
        "updated_at": "2020-10-05T16:33:48Z", "workflow_id": 2823525}}

GL_PROJECT = {"id": 30, "name": "test-deployment-webhooks", "description": "",
              "web_url": "http://10.126.0.2:3000/root/test-deployment-webhooks", "avatar_url": None,
              "namespace": "Administrator", "visibility_level": 0,
              "path_with_namespace": "root/test-deployment-webhooks", "default_branch": "master",
              "ci_config_path": ""}
GL_DEPLOYMENT = {
    "object_kind": "deployment", "status": "success", "status_changed_at": "2021-04-28 21:50:00 +0200",
    "deployment_id": 15, "deployable_id": 796,
    "deployable_url": "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
    "environment": "staging", "environment_tier": "staging", "environment_slug": "staging",
    "environment_external_url": "https://staging.example.com", "project": GL_PROJECT, "short_sha": "279484c0",
    "user": {"id": 1, "name": "Administrator", "username": "root", "email": "admin@example.com"},
    "user_url": "http://10.126.0.2:3000/root",
    "commit_url": "http://10.126.0.2:3000/root/test-deployment-webhooks/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468",
    "commit_title": "Add new file"}
GL_ADMIN = {"id": 1, "name": "Administrator", "username": "root", "email": "admin@example.com"}


def _build(bid, stage, name, status, started, finished, env=None):
    return {"id": bid, "stage": stage, "name": name, "status": status, "created_at": "2016-08-12 15:23:28 UTC",
            "started_at": started, "finished_at": finished, "duration": 17.0 if finished else None,
            "queued_duration": 196.0 if finished else None, "failure_reason": None,
            "when": "manual" if name == "production" else "on_success", "manual": name == "production",
            "allow_failure": False, "user": GL_ADMIN, "runner": None,
            "artifacts_file": {"filename": None, "size": None}, "environment": env}


GL_PIPELINE = {
    "object_kind": "pipeline",
    "object_attributes": {
        "id": 31, "iid": 3, "name": "Pipeline for branch: master", "ref": "master", "tag": False,
        "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2", "before_sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        "source": "merge_request_event", "status": "success", "stages": ["build", "test", "deploy"],
        "created_at": "2016-08-12 15:23:28 UTC", "finished_at": "2016-08-12 15:26:29 UTC", "duration": 63,
        "variables": [{"key": "NESTOR_PROD_ENVIRONMENT", "value": "us-west-1"}],
        "url": "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"},
    "user": GL_ADMIN,
    "project": {"id": 1, "name": "Gitlab Test", "description": "Atque in sunt eos similique dolores voluptatem.",
                "web_url": "http://192.168.64.1:3005/gitlab-org/gitlab-test", "avatar_url": None,
                "namespace": "Gitlab Org", "visibility_level": 20, "path_with_namespace": "gitlab-org/gitlab-test",
                "default_branch": "master"},
    "commit": {"id": "bcbb5ec396a2c0f828686f14fac9b80b780504f2", "message": "test\n",
               "timestamp": "2016-08-12T17:23:21+02:00", "author": {"name": "User", "email": "user@gitlab.com"}},
    "builds": [
        _build(380, "deploy", "production", "skipped", None, None,
               {"name": "production", "action": "start", "deployment_tier": "production"}),
        _build(377, "test", "test-image", "success", "2016-08-12 15:26:12 UTC", "2016-08-12 15:26:29 UTC"),
        _build(378, "test", "test-build", "failed", "2016-08-12 15:26:12 UTC", "2016-08-12 15:26:29 UTC"),
        _build(376, "build", "build-image", "success", "2016-08-12 15:24:56 UTC", "2016-08-12 15:25:26 UTC"),
        _build(379, "deploy", "staging", "created", None, None,
               {"name": "staging", "action": "start", "deployment_tier": "staging"})]}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("chg"), workers=1) as lv:
        lv.space("shop")
        lv.space("other")
        admin = lv.token("shop", Role.ADMIN)
        with lv.client(admin) as c:
            r = c.put("/v1/spaces/shop/integrations/github", json={
                "secret": GH_SECRET, "config": {"services": {"Codertocat/Hello-World:production": "cart"}}})
            assert r.status_code == 200, r.text
            assert GH_SECRET not in r.text and r.json()["secret_set"] is True
            assert c.put("/v1/spaces/shop/integrations/gitlab", json={"secret": GL_SECRET}).status_code == 200
            r = c.put("/v1/spaces/shop/integrations/gitlab", json={})
            assert r.status_code == 400 and "needs a secret" in r.json()["error"]
            assert c.put("/v1/spaces/shop/integrations/gitlab", json={"secret": GL_SECRET}).status_code == 200
        lv.state.put_integration("other", "github", {}, "other-space-github-secret-0123")
        yield lv


def _gh(live, event: str, payload, secret: str = GH_SECRET, space: str = "shop", raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    with live.client() as c:
        return c.post(f"/v1/spaces/{space}/webhooks/github", content=body,
                      headers={"X-GitHub-Event": event, "Content-Type": "application/json",
                               **github.sign(secret, body)})


def _gl(live, event: str, payload, token: str | None = GL_SECRET, space: str = "shop"):
    with live.client() as c:
        return c.post(f"/v1/spaces/{space}/webhooks/gitlab", content=json.dumps(payload).encode(),
                      headers={"X-Gitlab-Event": event, "Content-Type": "application/json",
                               **({"X-Gitlab-Token": token} if token is not None else {})})


def _stored(live, start: str, end: str) -> list[tuple]:
    df = live.runtime.app.sources.changes("shop", epoch(start), epoch(end))
    return [(r.resource, r.ts, r.kind, r.author) for r in df.itertuples()]


def test_github_deployments_become_changes(live):
    r = _gh(live, "deployment", GH_DEPLOYMENT)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1
    r = _gh(live, "deployment_status", GH_DEPLOYMENT_STATUS)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    assert r.json()["changes"][0]["description"] == (
        "GitHub deployment 145988746 of Codertocat/Hello-World master@f95f852bd8fc to production: success")
    assert _stored(live, "2019-05-15T15:00:00Z", "2019-05-15T16:00:00Z") == [
        ("cart", epoch("2019-05-15T15:20:53Z"), "deploy", "Codertocat"),     # mapped: repo:environment -> cart
        ("cart", epoch("2019-05-15T15:20:55Z"), "deploy", "Codertocat")]
    # a status that is not a finished deployment, and ping, are acknowledged and store nothing
    pending = copy.deepcopy(GH_DEPLOYMENT_STATUS)
    pending["deployment_status"]["state"] = "in_progress"
    for event, payload in (("deployment_status", pending), ("ping", {"zen": "Design for failure.", "hook_id": 1}),
                           ("push", {"ref": "refs/heads/main"})):
        r = _gh(live, event, payload)
        assert r.status_code == 202 and r.json()["accepted"] == 0 and r.json()["note"], r.text
    assert len(_stored(live, "2019-05-15T15:00:00Z", "2019-05-15T16:00:00Z")) == 2
    # GitHub's retry or "Redeliver" (or a replay of a captured delivery) adds nothing
    r = _gh(live, "deployment", GH_DEPLOYMENT)
    assert r.status_code == 202 and r.json()["accepted"] == 0 and "already recorded" in r.json()["note"], r.text
    assert len(_stored(live, "2019-05-15T15:00:00Z", "2019-05-15T16:00:00Z")) == 2


def test_github_deploy_workflow_runs_become_changes(live):
    r = _gh(live, "workflow_run", GH_WORKFLOW_RUN)            # workflow "test" is CI, not a deploy
    assert r.status_code == 202 and r.json()["accepted"] == 0 and "not a deploy workflow" in r.json()["note"]
    run = copy.deepcopy(GH_WORKFLOW_RUN)
    run["workflow"].update(name="Deploy to production", path=".github/workflows/deploy.yml")
    run["workflow_run"]["name"] = "Deploy to production"
    r = _gh(live, "workflow_run", run)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    assert _stored(live, "2020-10-05T16:00:00Z", "2020-10-05T17:00:00Z") == [
        ("octo-repo", epoch("2020-10-05T16:33:48Z"), "deploy", "Codertocat")]   # unmapped: the repository's name


def test_github_deliveries_that_are_refused(live):
    body = json.dumps(GH_DEPLOYMENT).encode()
    before = _stored(live, "2019-01-01T00:00:00Z", "2019-12-31T00:00:00Z")
    with live.client() as c:
        r = c.post("/v1/spaces/shop/webhooks/github", content=body, headers={"X-GitHub-Event": "deployment"})
        assert r.status_code == 401 and r.json() == {"error": "missing X-Hub-Signature-256 header"}
        r = c.post("/v1/spaces/shop/webhooks/github", content=body + b" ",
                   headers={"X-GitHub-Event": "deployment", **github.sign(GH_SECRET, body)})
        assert r.status_code == 401 and "does not match" in r.json()["error"]
    # another space's secret on this space, and this space's secret on another: refused
    assert _gh(live, "deployment", GH_DEPLOYMENT, secret="other-space-github-secret-0123").status_code == 401
    assert _gh(live, "deployment", GH_DEPLOYMENT, space="other").status_code == 401
    # signed but malformed: 400, one line
    r = _gh(live, "deployment", None, raw=b"{not json")
    assert r.status_code == 400 and r.json() == {"error": "the body is not valid JSON"}
    r = _gh(live, "deployment", {"action": "created", "deployment": DEPLOYMENT})
    assert r.status_code == 400 and r.json() == {"error": "repository must be an object"}
    bad_time = copy.deepcopy(GH_DEPLOYMENT)
    bad_time["deployment"]["created_at"] = "yesterday"
    r = _gh(live, "deployment", bad_time)
    assert r.status_code == 400 and "is not an RFC 3339 time" in r.json()["error"]
    r = _gh(live, "", GH_DEPLOYMENT)
    assert r.status_code == 400 and r.json() == {"error": "missing X-GitHub-Event header"}
    # a space without a github integration: 403, the same as a space that does not exist
    with live.client() as c:
        r1 = c.post("/v1/spaces/nosuch/webhooks/github", content=body, headers=github.sign(GH_SECRET, body))
    live.state.delete_integration("other", "github")
    r2 = _gh(live, "deployment", GH_DEPLOYMENT, space="other")
    assert r1.status_code == r2.status_code == 403 and r1.json() == r2.json()
    assert _stored(live, "2019-01-01T00:00:00Z", "2019-12-31T00:00:00Z") == before


def test_gitlab_deployments_and_deploying_pipelines_become_changes(live):
    r = _gl(live, "Deployment Hook", GL_DEPLOYMENT)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    assert r.json()["changes"][0]["description"] == (
        "GitLab deployment 15 of root/test-deployment-webhooks 279484c0 to staging: success (Add new file)")
    assert _stored(live, "2021-04-28T19:00:00Z", "2021-04-28T20:00:00Z") == [
        ("test-deployment-webhooks", epoch("2021-04-28T19:50:00Z"), "deploy", "root")]   # +0200 -> 19:50Z
    running = {**GL_DEPLOYMENT, "status": "running"}
    assert _gl(live, "Deployment Hook", running).json()["accepted"] == 0

    # the documented pipeline: its deploy jobs were skipped or not run yet -> CI only, nothing stored
    r = _gl(live, "Pipeline Hook", GL_PIPELINE)
    assert r.status_code == 202 and r.json()["accepted"] == 0 and "no finished job" in r.json()["note"]
    deployed = copy.deepcopy(GL_PIPELINE)
    deployed["builds"][4].update(status="success", started_at="2016-08-12 15:26:30 UTC",
                                 finished_at="2016-08-12 15:27:02 UTC")
    r = _gl(live, "Pipeline Hook", deployed)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    assert _stored(live, "2016-08-12T15:00:00Z", "2016-08-12T16:00:00Z") == [
        ("gitlab-test", epoch("2016-08-12T15:27:02Z"), "deploy", "root")]
    assert _gl(live, "Push Hook", {"object_kind": "push"}).json()["accepted"] == 0


def test_gitlab_deliveries_that_are_refused(live):
    before = _stored(live, "2021-01-01T00:00:00Z", "2021-12-31T00:00:00Z")
    r = _gl(live, "Deployment Hook", GL_DEPLOYMENT, token=None)
    assert r.status_code == 401 and r.json() == {"error": "missing X-Gitlab-Token header"}
    r = _gl(live, "Deployment Hook", GL_DEPLOYMENT, token=GL_SECRET + "x")
    assert r.status_code == 401 and "does not match" in r.json()["error"]
    r = _gl(live, "Deployment Hook", {**GL_DEPLOYMENT, "object_kind": "pipeline"})
    assert r.status_code == 400 and r.json() == {"error": "a Deployment Hook has object_kind 'deployment'"}
    r = _gl(live, "Deployment Hook", {**GL_DEPLOYMENT, "status_changed_at": "not a time"})
    assert r.status_code == 400 and "status_changed_at" in r.json()["error"]
    r = _gl(live, "Deployment Hook", {k: v for k, v in GL_DEPLOYMENT.items() if k != "project"})
    assert r.status_code == 400 and r.json() == {"error": "project must be an object"}
    assert _gl(live, "Deployment Hook", GL_DEPLOYMENT, space="other").status_code == 403
    assert _stored(live, "2021-01-01T00:00:00Z", "2021-12-31T00:00:00Z") == before
    with live.client() as c:
        audit = c.get("/v1/spaces/shop/audit?limit=1000",
                      headers={"Authorization": f"Bearer {live.token('shop', Role.ADMIN)}"}).text
    assert GL_SECRET not in audit and GH_SECRET not in audit and '"changes"' in audit
