"""Outgoing updates: Slack threads (Block Kit), PagerDuty notes, ServiceNow work notes, Jira comments,
GitHub issues and signed webhooks, through the durable outbox: retried with backoff while a receiver is
down, delivered once it is back, and not lost when the dispatcher (the server) restarts."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from respond.kit import concluded, setup
from respond.standins import (
    GH_TOKEN,
    JIRA_EMAIL,
    JIRA_TOKEN,
    PD_TOKEN,
    SLACK_TOKEN,
    SNOW_PASS,
    SNOW_USER,
    StandIn,
)
from vigil.model import Alert
from vigil.respond.notify.blocks import blocks, esc
from vigil.respond.notify.dispatch import Dispatcher
from vigil.respond.notify.messages import message
from vigil.respond.notify.slack import slack_text
from vigil.respond.service import RespondService
from vigil.store.state import StateStore

ENV = {"VIGIL_SECRET_SLACK_BOT": SLACK_TOKEN, "VIGIL_SECRET_SLACK_SIGNING": "8f742231b10e8888abcd99yyyzzz85a5",
       "VIGIL_SECRET_PD": PD_TOKEN, "VIGIL_SECRET_SNOW": SNOW_PASS, "VIGIL_SECRET_JIRA": JIRA_TOKEN,
       "VIGIL_SECRET_GH": GH_TOKEN, "VIGIL_SECRET_HOOK": "hook-secret-0123456789"}


@pytest.fixture
def env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def slack_cfg(url: str, **kw) -> dict:
    return {"api_url": url + "/slack/api/", "bot_token": {"env": "VIGIL_SECRET_SLACK_BOT"},
            "signing_secret": {"env": "VIGIL_SECRET_SLACK_SIGNING"}, "channel": "C0INCIDENT",
            "approvers": ["U0ALICE"], **kw}


def all_notifiers(svc, space: str, url: str) -> None:
    svc.set_notifier(space, "slack", True, slack_cfg(url), "admin")
    svc.set_notifier(space, "pagerduty", True, {"api_url": url + "/pd", "token": {"env": "VIGIL_SECRET_PD"},
                                                "from_email": "oncall@example.com"}, "admin")
    svc.set_notifier(space, "servicenow", True, {"instance_url": url + "/snow", "username": SNOW_USER,
                                                 "password": {"env": "VIGIL_SECRET_SNOW"}}, "admin")
    svc.set_notifier(space, "jira", True, {"url": url + "/jira", "email": JIRA_EMAIL, "project": "OPS",
                                           "api_token": {"env": "VIGIL_SECRET_JIRA"}}, "admin")
    svc.set_notifier(space, "github", True, {"api_url": url + "/gh", "repository": "acme/shop",
                                             "token": {"env": "VIGIL_SECRET_GH"}}, "admin")
    svc.set_notifier(space, "webhook", True, {"url": url + "/hook", "secret": {"env": "VIGIL_SECRET_HOOK"}}, "admin")


def test_every_notifier_gets_the_conclusion_then_threads_later_updates(database_url, env):
    with StandIn() as s:
        st, svc = setup(database_url)
        alert = Alert(id="a1", title="Checkout errors", at=datetime(2026, 12, 4, 12, tzinfo=UTC),
                      fingerprint="pagerduty:Q1ABCDEF")
        all_notifiers(svc, "shop", s.url)     # conclusions after this are published
        inv = concluded(st, "shop", alert=alert)
        d = Dispatcher(svc)
        d.tick()                              # queues the conclusion for every notifier and delivers it
        out = {o["notifier"]: o for o in svc.store.outbox("shop")}
        assert {k: o["status"] for k, o in out.items()} == {
            "slack": "sent", "pagerduty": "sent", "servicenow": "sent", "jira": "sent", "github": "sent",
            "webhook": "dead"}                # the stand-in has no /hook: 404 is not retried
        assert "HTTP 404" in out["webhook"]["last_error"]
        post = s.of("/slack/api/chat.postMessage")[0].params()
        assert post["channel"] == "C0INCIDENT" and "thread_ts" not in post
        assert post["text"].startswith("Vigil: Probable root cause: orders-api")
        blk = json.loads(post["blocks"]) if isinstance(post["blocks"], str) else post["blocks"]
        ids = [e["action_id"] for b in blk if b["type"] == "actions" for e in b["elements"]]
        assert ids[:3] == ["hyp_accept", "hyp_discard", "hyp_note"]
        assert s.of("/pd/incidents/Q1ABCDEF/notes")[0].json()["note"]["content"].startswith("Vigil: Probable")
        assert s.of("/snow/api/now/table/incident")[0].json()["short_description"].startswith("Vigil:")
        assert s.of("/jira/rest/api/3/issue")[0].json()["fields"]["project"] == {"key": "OPS"}
        assert s.of("/gh/repos/acme/shop/issues")[0].json()["labels"] == ["incident"]
        # a later update goes into each thread
        svc.store_journal_note(inv, "x", "t", {})
        svc._publish("shop", inv, "chat", {"question": "what changed?", "answer": "a deploy [J1]"}, "chat:1")
        d.tick()
        reply = s.of("/slack/api/chat.postMessage")[1].params()
        assert reply["thread_ts"] == json.loads(json.dumps(out["slack"]["result"]))["ts"]
        assert s.of("/snow/api/now/table/incident/")[0].method == "PATCH"
        assert "work_notes" in s.of("/snow/api/now/table/incident/")[0].json()
        assert s.of("/jira/rest/api/3/issue/OPS-")[0].path.endswith("/comment")
        assert s.of("/gh/repos/acme/shop/issues/")[0].path.endswith("/comments")
        assert len(s.of("/pd/incidents/Q1ABCDEF/notes")) == 2
        # the conclusion is queued once, however often the dispatcher looks
        d.tick()
        assert len([o for o in svc.store.outbox("shop") if o["event"] == "conclusion"]) == 6


def test_a_receiver_outage_is_retried_and_survives_a_restart(database_url, env):
    with StandIn() as s:
        st, svc = setup(database_url)
        svc.set_notifier("shop", "slack", True, slack_cfg(s.url), "admin")
        concluded(st, "shop")
        s.down = True
        d = Dispatcher(svc, backoff_s=0.0)
        d.tick()
        item = svc.store.outbox("shop")[0]
        assert item["status"] == "pending" and item["attempts"] == 1 and "HTTP 503" in item["last_error"]
        d.tick()
        assert svc.store.outbox("shop")[0]["attempts"] == 2
        # "the server restarts": a new store and dispatcher over the same database
        svc2 = RespondService(StateStore(database_url), svc.sources)
        s.down = False
        Dispatcher(svc2, backoff_s=0.0).tick()
        item = svc2.store.outbox("shop")[0]
        assert item["status"] == "sent" and item["attempts"] == 3 and item["last_error"] == ""
        assert len([r for r in s.of("/slack/api/chat.postMessage")]) == 3     # two refused, one delivered


def test_backoff_grows_and_a_delivery_gives_up_after_its_attempts(database_url, env):
    with StandIn() as s:
        st, svc = setup(database_url)
        svc.set_notifier("shop", "slack", True, slack_cfg(s.url), "admin")
        concluded(st, "shop")
        s.down = True
        d = Dispatcher(svc, backoff_s=0.0, max_attempts=3)
        assert [d._retry_in(n) for n in range(4)] == [0.0, 0.0, 0.0, 0.0]
        assert [Dispatcher(svc, backoff_s=2.0)._retry_in(n) for n in range(10)] == [2, 4, 8, 16, 32, 64, 128, 256, 300,
                                                                                   300]
        for _ in range(4):
            d.tick()
        item = svc.store.outbox("shop")[0]
        assert item["status"] == "dead" and item["attempts"] == 3


def test_slack_rejections_are_not_retried_forever(database_url, env, monkeypatch):
    with StandIn() as s:
        st, svc = setup(database_url)
        monkeypatch.setenv("VIGIL_SECRET_SLACK_BOT", "xoxb-wrong")
        svc.set_notifier("shop", "slack", True, slack_cfg(s.url), "admin")
        concluded(st, "shop")
        Dispatcher(svc).tick()
        item = svc.store.outbox("shop")[0]
        assert item["status"] == "dead" and item["last_error"] == "Slack answered invalid_auth"


def test_a_channel_per_incident(database_url, env):
    with StandIn() as s:
        st, svc = setup(database_url)
        cfg = slack_cfg(s.url, channel=None, channel_per_incident=True, invite=["U0ALICE", "U0BOB"])
        svc.set_notifier("shop", "slack", True, cfg, "admin")
        inv = concluded(st, "shop")
        Dispatcher(svc).tick()
        created = s.of("/slack/api/conversations.create")[0].params()
        assert created["name"] == f"inc-{inv.lower().replace('_', '_')}"[:80]
        assert s.of("/slack/api/conversations.invite")[0].params()["users"] == "U0ALICE,U0BOB"
        assert s.of("/slack/api/chat.postMessage")[0].params()["channel"].startswith("C")
        assert svc.store.thread(inv, "slack")["channel_name"] == created["name"]


def test_the_outgoing_webhook_is_signed(database_url, env):
    got = []

    class Hook(StandIn):
        def route(self, r):
            if r.path == "/hook":
                got.append(r)
                return 200, {}
            return super().route(r)
    with Hook() as s:
        st, svc = setup(database_url)
        svc.set_notifier("shop", "webhook", True, {"url": s.url + "/hook", "secret": {"env": "VIGIL_SECRET_HOOK"}},
                         "admin")
        inv = concluded(st, "shop")
        Dispatcher(svc).tick()
        r = got[0]
        ts = r.headers["x-vigil-timestamp"]
        want = hmac.new(ENV["VIGIL_SECRET_HOOK"].encode(), ts.encode() + b"." + r.body, hashlib.sha256).hexdigest()
        assert r.headers["x-vigil-signature"] == f"sha256={want}"
        body = r.json()
        assert body["event"] == "conclusion" and body["investigation"] == inv and body["space"] == "shop"


def test_block_kit_escapes_telemetry(database_url, env):
    st, svc = setup(database_url)
    hostile = "<!channel> cart <https://evil.example|click> & more"
    inv = concluded(st, "shop", resource=hostile)
    m = message(svc, "shop", inv, "conclusion", {})
    mrkdwn: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("type") == "mrkdwn":
                mrkdwn.append(x["text"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(blocks(m))
    # every text Slack parses as mrkdwn carries the name escaped (plain_text is never parsed)
    assert mrkdwn and all("<!channel>" not in t and "<https://" not in t for t in mrkdwn)
    assert any(esc(hostile) in t for t in mrkdwn)
    assert esc(m.title) == slack_text(m) and "<!channel>" not in slack_text(m)
