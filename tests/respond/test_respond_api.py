"""Respond and prevent over the live server's API: settings, the action lifecycle, specs, chat, the
post-incident report, the backlog and skills; Slack's endpoints refuse unsigned and wrongly signed
requests; bad input is a one-line 4xx."""

from __future__ import annotations

import json

import pytest
from e2e.kit import live_server

from respond.kit import concluded
from respond.standins import StandIn, slack_sign
from respond.test_actions import DEPLOYER_SECRET, SECRET_ENV
from respond.test_notify import ENV, slack_cfg
from vigil.model import AgentSpace, Role


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for k, v in {**ENV, SECRET_ENV: DEPLOYER_SECRET}.items():
        mp.setenv(k, v)
    calls: list = []
    with StandIn(deployer_secret=DEPLOYER_SECRET, on_deploy=calls.append) as s, \
            live_server(tmp_path_factory.mktemp("respond"), workers=1, outbox_interval_s=0.2) as lv:
        lv.state.put_space(AgentSpace(id="shop", name="shop"))
        lv.state.put_space(AgentSpace(id="other", name="other"))
        lv.standin, lv.calls = s, calls
        lv.admin = lv.token("shop", Role.ADMIN)
        lv.operator = lv.token("shop", Role.OPERATOR)
        lv.viewer = lv.token("shop", Role.VIEWER)
        yield lv
    mp.undo()


def test_the_action_lifecycle_over_the_api(live):
    s = live.standin
    with live.client(live.admin) as a, live.client(live.operator) as o, live.client(live.viewer) as v:
        r = a.put("/v1/spaces/shop/action-settings/webhook", json={"enabled": True, "config": {
            "url": s.url + "/deployer", "secret": {"env": SECRET_ENV}}})
        assert r.status_code == 200 and r.json()["enabled"] is True
        inv = concluded(live.state, "shop")
        spec = v.get(f"/v1/spaces/shop/investigations/{inv}/mitigation").json()[0]
        assert spec["spec"] == "vigil.mitigation/v1" and spec["verify"]["signal"] == "errors"
        act = next(st["action"] for st in spec["steps"] if st["action"])
        assert act["kind"] == "webhook" and act["args"]["operation"] == "rollback"
        md = v.get(f"/v1/spaces/shop/investigations/{inv}/mitigation", params={"format": "md"})
        assert md.headers["content-type"].startswith("text/markdown") and "### Verify recovery" in md.text
        p = o.post(f"/v1/spaces/shop/investigations/{inv}/actions", json={"kind": act["kind"], "args": act["args"]})
        assert p.status_code == 201 and p.json()["status"] == "proposed"
        aid = p.json()["id"]
        assert v.post(f"/v1/spaces/shop/actions/{aid}/approve").status_code == 403      # a viewer cannot approve
        ap = o.post(f"/v1/spaces/shop/actions/{aid}/approve").json()
        assert ap["action"]["status"] == "approved" and ap["expires_in_s"] == 300
        run = o.post(f"/v1/spaces/shop/actions/{aid}/run", json={"token": ap["token"]})
        assert run.status_code == 200 and run.json()["status"] == "succeeded"
        again = o.post(f"/v1/spaces/shop/actions/{aid}/run", json={"token": ap["token"]})
        assert again.status_code == 409 and again.json() == {
            "error": "the approval token was already used: an approval runs its action once"}
        assert len(live.calls) == 1
        assert [x["id"] for x in v.get(f"/v1/spaces/shop/investigations/{inv}/actions").json()] == [aid]


def test_bad_input_is_a_one_line_4xx(live):
    inv = concluded(live.state, "shop")
    with live.client(live.admin) as a:
        cases = [
            a.put("/v1/spaces/shop/action-settings/nosuch", json={"enabled": True, "config": {}}),
            a.put("/v1/spaces/shop/action-settings/webhook", json={"enabled": True, "config": {"url": "ftp://x"}}),
            a.put("/v1/spaces/shop/notifier-settings/slack", json={"enabled": True, "config": {"bot_token": "plain"}}),
            a.put("/v1/spaces/shop/notifier-settings/slack", json={"enabled": True, "config": slack_cfg(
                "http://127.0.0.1:9", bot_token={"env": "HOME"})}),
            a.post(f"/v1/spaces/shop/investigations/{inv}/actions", json={"kind": "webhook", "args": {
                "operation": "rollback", "service": "cart; rm -rf /"}}),
            a.post(f"/v1/spaces/shop/investigations/{inv}/actions", json={"kind": "git-revert", "args": {}}),
            a.post("/v1/spaces/shop/actions/act_nosuch/run", json={"token": "vat_" + "x" * 20}),
            a.post(f"/v1/spaces/shop/investigations/{inv}/chat", json={"question": ""}),
            a.post(f"/v1/spaces/shop/investigations/{inv}/rerun", json={}),
            a.get(f"/v1/spaces/shop/investigations/{inv}/postmortem", params={"format": "docx"}),
            a.patch("/v1/spaces/shop/prevention/bkl_nosuch", json={"status": "maybe"}),
        ]
        for r in cases:
            assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
            body = r.json()
            assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
        assert cases[3].json()["error"].startswith("secret environment variable 'HOME' is not one a space may use")
        assert cases[5].status_code == 403 and "off in space" in cases[5].json()["error"]


def test_reports_chat_backlog_and_skills(live):
    inv = concluded(live.state, "shop")
    with live.client(live.admin) as a, live.client(live.viewer) as v, live.client(live.operator) as o:
        pdf = v.get(f"/v1/spaces/shop/investigations/{inv}/postmortem", params={"format": "pdf"})
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-")
        html = v.get(f"/v1/spaces/shop/investigations/{inv}/postmortem", params={"format": "html"})
        assert "Post-incident report" in html.text
        ans = v.post(f"/v1/spaces/shop/investigations/{inv}/chat", json={"question": "which logs did you analyze?"})
        assert ans.status_code == 200 and ans.json()["intent"] == "data" and ans.json()["cites"]
        steer = v.post(f"/v1/spaces/shop/investigations/{inv}/chat", json={"question": "exclude frontend and rerun"})
        assert "operator" in steer.json()["answer"]
        rr = o.post(f"/v1/spaces/shop/investigations/{inv}/rerun", json={"exclude": ["frontend"]})
        assert rr.status_code == 202 and rr.json()["steering"]["exclude"] == ["frontend"]
        sk = a.put("/v1/spaces/shop/skills/orders-runbook", json={
            "title": "Orders API errors", "body": "1. check the env\n2. roll back", "match": {"services": ["orders-*"]}})
        assert sk.status_code == 200
        a.put("/v1/spaces/shop/skills/standing", json={"title": "Standing", "body": "never restart db", "always": True})
        spec = v.get(f"/v1/spaces/shop/investigations/{inv}/mitigation").json()[0]
        assert spec["runbooks"] == [{"id": "orders-runbook", "title": "Orders API errors",
                                     "matched": ["service orders-api"]}]
        assert "never restart db" in spec["instructions"]
        assert o.post("/v1/spaces/shop/prevention/refresh").status_code == 200
        assert isinstance(v.get("/v1/spaces/shop/prevention").json(), list)


def test_slack_endpoints_need_the_spaces_own_signature(live):
    with live.client(live.admin) as a:
        r = a.put("/v1/spaces/shop/notifier-settings/slack", json={"enabled": True, "config": slack_cfg(
            live.standin.url)})
        assert r.status_code == 200
    body = b"payload=" + json.dumps({"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": []}).encode()
    with live.client() as c:
        r = c.post("/v1/spaces/shop/slack/interactivity", content=body)
        assert r.status_code == 401 and "missing" in r.json()["error"]
        r = c.post("/v1/spaces/shop/slack/interactivity", content=body, headers=slack_sign("another-secret", body))
        assert r.status_code == 401 and "does not match" in r.json()["error"]
        r = c.post("/v1/spaces/other/slack/interactivity", content=body,
                   headers=slack_sign(ENV["VIGIL_SECRET_SLACK_SIGNING"], body))
        assert r.status_code == 404 and "not turned on" in r.json()["error"]
        r = c.post("/v1/spaces/shop/slack/interactivity", content=body,
                   headers=slack_sign(ENV["VIGIL_SECRET_SLACK_SIGNING"], body))
        assert r.status_code == 200 and r.json() == {"ok": True, "results": []}
        old = slack_sign(ENV["VIGIL_SECRET_SLACK_SIGNING"], body, ts=1531420618)
        assert c.post("/v1/spaces/shop/slack/interactivity", content=body, headers=old).status_code == 401
