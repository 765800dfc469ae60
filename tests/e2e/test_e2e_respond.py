"""End to end, respond: a real deploy breaks a real service and Vigil helps the on-call through to recovery.

Real processes: ``vigil serve``; the OpenTelemetry-SDK shop app exporting over OTLP and serving its
Prometheus metrics; Debian's Prometheus scraping it and evaluating an alert rule; Debian's Alertmanager
posting the alert to Vigil. The release v2 of the shop ships with a typo in its environment
(``CART_DATABSE_URL``): its cart fails every call with ``KeyError: 'CART_DATABASE_URL'``. The deploy is
recorded by a signed GitHub ``deployment`` webhook; Prometheus sees the checkout errors and Alertmanager
pages Vigil. Then, as an on-call would see it:

the conclusion names the deploy -> a Slack thread gets the conclusion and the mitigation spec, with an
Approve button for the rollback -> an approver clicks it (a signed interactivity payload) -> the signed
webhook action calls the deployer, which really restarts the previous release -> the same click replayed
is refused -> the recovery is verified from the app's own telemetry and posted to the thread -> the Jira
ticket gets each update -> the alert resolves in Prometheus and Alertmanager tells Vigil, which closes
the incident -> the post-incident report lists all of it.

Slack's Web API, Jira and the deployer are local stand-ins (tests/respond/standins.py); everything else
is real."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from respond.standins import JIRA_EMAIL, JIRA_TOKEN, SLACK_TOKEN, StandIn, slack_sign

from e2e.kit import PrometheusStack, ServeProcess, free_port, vigil_cli, wait_for
from vigil.integrations import github

HERE = Path(__file__).resolve().parent
SIGNING = "e2e-slack-signing-secret-0123456789"
DEPLOYER = "e2e-deployer-secret-0123456789"
GITHUB = "e2e-github-webhook-secret-0123456789"
ENV = {"VIGIL_SECRET_SLACK_BOT": SLACK_TOKEN, "VIGIL_SECRET_SLACK_SIGNING": SIGNING,
       "VIGIL_SECRET_DEPLOYER": DEPLOYER, "VIGIL_SECRET_JIRA": JIRA_TOKEN, "VIGIL_OUTBOX_INTERVAL_S": "0.5"}
V1, V2 = "1f0c2a9e4b7d3c5a8e6f0b1d2c3a4e5f6a7b8c9d", "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"
RULES = """
groups:
  - name: shop
    rules:
      - alert: CheckoutErrors
        expr: shop_error_ratio{service="frontend"} > 0.2
        for: 2s
        labels:
          severity: page
          service: frontend
        annotations:
          summary: Checkout requests are failing
"""


class Shop:
    """The shop's releases as processes: start one, stop it, roll back to the previous one."""

    def __init__(self, url: str, token: str, logs: Path, prom_port: int) -> None:
        self.url, self.token, self.logs, self.prom_port = url, token, logs, prom_port
        self.proc: subprocess.Popen | None = None
        self.history: list[str] = []

    def deploy(self, version: str, backfill: float = 0.0) -> None:
        self.stop()
        env = {"PATH": "/usr/bin:/bin"}
        if version == "v1":
            env["CART_DATABASE_URL"] = "postgres://cart@db/cart"
        else:                                      # the typo shipped in v2's deploy
            env["CART_DATABSE_URL"] = "postgres://cart@db/cart"
        fh = open(self.logs / f"shop-{version}-{len(self.history)}.log", "wb")  # noqa: SIM115 - closed with it
        self.proc = subprocess.Popen([sys.executable, str(HERE / "shop_app.py"), "--otlp", self.url, "--token",
                                      self.token, "--backfill", str(backfill), "--duration", "900", "--rps", "25",
                                      "--require-env", "CART_DATABASE_URL", "--prom-port", str(self.prom_port)],
                                     env=env, stdout=fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.history.append(version)

    def rollback(self, body: dict) -> None:
        assert body["operation"] == "rollback" and body["service"] == "cart"
        assert body["params"]["revision"] == V1[:300]
        self.deploy(self.history[-2])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _blocks(req) -> list:
    b = req.params().get("blocks")
    return json.loads(b) if isinstance(b, str) else (b or [])


def test_a_bad_deploy_from_alert_to_recovery_and_report(tmp_path):
    home = tmp_path / "vigil"
    assert vigil_cli("space", "create", "shop", home=home).returncode == 0
    admin = vigil_cli("token", "create", "--space", "shop", "--role", "admin", home=home).stdout.strip()
    operator = vigil_cli("token", "create", "--space", "shop", "--role", "operator", home=home).stdout.strip()
    deploys: list[dict] = []
    with StandIn(deployer_secret=DEPLOYER, on_deploy=deploys.append) as s:
        vigil = ServeProcess(home, env=ENV).start()
        shop = Shop(vigil.url, operator, tmp_path, free_port())
        stack = PrometheusStack(tmp_path, f"{vigil.url}/v1/spaces/shop/webhooks/alertmanager", operator,
                                [f"127.0.0.1:{shop.prom_port}"], RULES)
        s.on_deploy = lambda body: (deploys.append(body), shop.rollback(body))
        try:
            stack.__enter__()
            with vigil.client(admin) as a:
                for path, body in (
                    ("/v1/spaces/shop/integrations/github", {"secret": GITHUB}),
                    ("/v1/spaces/shop/action-settings/webhook", {"enabled": True, "config": {
                        "url": s.url + "/deployer", "secret": {"env": "VIGIL_SECRET_DEPLOYER"}, "verify_for_s": 15}}),
                    ("/v1/spaces/shop/notifier-settings/slack", {"enabled": True, "config": {
                        "api_url": s.url + "/slack/api/", "bot_token": {"env": "VIGIL_SECRET_SLACK_BOT"},
                        "signing_secret": {"env": "VIGIL_SECRET_SLACK_SIGNING"}, "channel": "C0INCIDENT",
                        "approvers": ["U0ALICE"]}}),
                    ("/v1/spaces/shop/notifier-settings/jira", {"enabled": True, "config": {
                        "url": s.url + "/jira", "email": JIRA_EMAIL, "api_token": {"env": "VIGIL_SECRET_JIRA"},
                        "project": "OPS", "issue_type": "Incident"}}),
                ):
                    r = a.put(path, json=body)
                    assert r.status_code == 200, (path, r.text)

            # v1 runs well, with five minutes of history; Prometheus scrapes it
            shop.deploy("v1", backfill=300)
            wait_for(stack.scraping, 60, 0.5, "Prometheus scraping the shop")
            time.sleep(15)
            # the deploy of v2: GitHub says so (signed), then the release starts failing
            deployed_at = datetime.now(UTC)
            payload = {"action": "created", "deployment": {
                "id": 4242, "sha": V2, "ref": "main", "environment": "production", "description": "release v2",
                "created_at": deployed_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "creator": {"login": "alice"},
                "payload": {"changed_keys": ["CART_DATABSE_URL"], "previous_sha": V1}},
                "repository": {"full_name": "acme/cart", "name": "cart"}, "sender": {"login": "alice"}}
            body = json.dumps(payload).encode()
            with vigil.client() as c:
                r = c.post("/v1/spaces/shop/webhooks/github", content=body,
                           headers={**github.sign(GITHUB, body), "X-GitHub-Event": "deployment",
                                    "Content-Type": "application/json"})
                assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
            shop.deploy("v2")
            failing_since = datetime.now(UTC)
            # the checkout errors page someone: Prometheus' rule fires, Alertmanager posts it to Vigil
            with vigil.client(operator) as o:
                inc = wait_for(lambda: next((i for i in o.get("/v1/spaces/shop/incidents").json()
                                             if i.get("investigation_id")), None), 120, 0.5, "the page from Alertmanager")
                inc = o.get(f"/v1/spaces/shop/incidents/{inc['id']}").json()
                assert inc["source"] == "alertmanager" and inc["alerts"][0]["labels"]["alertname"] == "CheckoutErrors"
                assert datetime.fromisoformat(inc["alerts"][0]["starts_at"]) >= failing_since
                inv_id = inc["investigation_id"]
                inv = wait_for(lambda: (lambda j: j if j["status"] in ("concluded", "inconclusive", "failed") else None)(
                    o.get(f"/v1/spaces/shop/investigations/{inv_id}").json()), 180, 1.0, "the conclusion")
                hyps = o.get(f"/v1/spaces/shop/investigations/{inv_id}/hypotheses").json()
                # the conclusion names the deploy as the cause, the cart's errors as its effect
                assert hyps[0]["resource"] == "cart", [(h["resource"], h["fault_kind"]) for h in hyps]
                assert inv["summary"].startswith("Probable root cause: deploy of cart by alice"), inv["summary"]
                assert "changed keys CART_DATABSE_URL" in inv["summary"] and "-> cart" in inv["summary"]
                assert hyps[0]["evidence"][0]["kind"] == "change"

            # the Slack thread: the conclusion with the mitigation spec and an Approve button
            root = wait_for(lambda: next((r for r in s.of("/slack/api/chat.postMessage")
                                          if "thread_ts" not in r.params()), None), 60, 0.5, "the Slack conclusion")
            text = json.dumps(_blocks(root))
            assert "Cause: deploy of cart by alice" in text and "Verify recovery" in text
            approve = next(e for b in _blocks(root) if b["type"] == "actions" for e in b["elements"]
                           if e["action_id"] == "action_approve")
            root_ts = s.posted[0]["ts"]
            # an approver clicks Approve (Slack signs the interactivity request)
            click = {"type": "block_actions", "user": {"id": "U0ALICE", "username": "alice"}, "trigger_id": "1.2.3",
                     "channel": {"id": "C0INCIDENT"}, "actions": [{"type": "button", "action_id": "action_approve",
                                                                    "value": approve["value"], "block_id": "b"}]}
            form = urlencode({"payload": json.dumps(click)}).encode()
            headers = slack_sign(SIGNING, form)
            with vigil.client() as c:
                r = c.post("/v1/spaces/shop/slack/interactivity", content=form, headers=headers)
                assert r.status_code == 200 and r.json()["results"][0]["status"] == "approved", r.text
                # the rollback really ran once: the deployer restarted v1
                wait_for(lambda: len(deploys) == 1 and shop.history[-1] == "v1", 60, 0.5, "the rollback")
                # the same signed click again: refused, nothing runs twice
                again = c.post("/v1/spaces/shop/slack/interactivity", content=form, headers=headers)
                assert again.status_code == 200 and "already" in again.json()["results"][0]["refused"]
            time.sleep(2)
            assert len(deploys) == 1 and shop.history == ["v1", "v2", "v1"]

            # the recovery is verified from the app's telemetry and posted to the thread
            with vigil.client(operator) as o:
                act = wait_for(lambda: (lambda a: a if a.get("recovery", {}).get("recovered") else None)(
                    o.get(f"/v1/spaces/shop/actions/{approve['value']}").json()), 180, 2.0, "the recovery check")
                assert act["status"] == "succeeded" and act["approved_by"].startswith("slack:U0ALICE")
                assert act["recovery"]["message"].startswith("recovered: error ratio of spans of cart")
            replies = wait_for(lambda: [r for r in s.of("/slack/api/chat.postMessage") if r.params().get("thread_ts")
                                        and "Recovered after" in r.params().get("text", "")], 60, 0.5, "the recovery post")
            assert replies[0].params()["thread_ts"] == root_ts
            assert all(p["thread_ts"] == root_ts for p in s.posted[1:])        # every update in the one thread
            # the alert resolves in Prometheus; Alertmanager tells Vigil, which closes the incident
            with vigil.client(operator) as o:
                wait_for(lambda: o.get(f"/v1/spaces/shop/incidents/{inc['id']}").json()["status"] == "resolved",
                         120, 1.0, "the resolved alert from Alertmanager")
            # the ticket: created with the conclusion, then a comment for every update
            wait_for(lambda: len(s.of("/jira/rest/api/3/issue/OPS-")) >= 3, 60, 0.5, "the Jira comments")
            created = s.of("/jira/rest/api/3/issue")[0].json()["fields"]
            assert created["summary"].startswith("Vigil: Probable root cause: deploy of cart")
            comments = [json.dumps(r.json()) for r in s.of("/jira/rest/api/3/issue/OPS-")]
            for needle in ("Action approved", "Action ran", "Recovered after"):
                assert any(needle in c for c in comments), (needle, comments)

            # the post-incident report lists it all
            with vigil.client(operator) as o:
                md = o.get(f"/v1/spaces/shop/investigations/{inv_id}/postmortem", params={"format": "md"}).text
                for needle in ("alert fired: Checkout requests are failing", "deploy of cart by alice",
                               "alert resolved: Checkout requests are failing",
                               "action approved by slack:U0ALICE", "recovered: error ratio of spans of cart",
                               "## Recommendations", "canary"):
                    assert needle in md, (needle, md)
                pdf = o.get(f"/v1/spaces/shop/investigations/{inv_id}/postmortem", params={"format": "pdf"})
                assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
                audit = vigil.client(admin).get("/v1/spaces/shop/audit", params={"limit": 200}).json()
                acts = [e["action"] for e in audit]
                for a in ("action-propose", "action-approve", "action-run", "action-result", "action-verify"):
                    assert a in acts, (a, acts)
        finally:
            shop.stop()
            stack.__exit__(None, None, None)
            vigil.stop()

