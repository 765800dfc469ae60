"""Slack's requests to Vigil: v0 signatures checked (Slack's documented example, old timestamps, bad
signatures), buttons judged and approvals run once for the space's approvers only, replies in a thread
answered as chat."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from respond.kit import concluded, setup
from respond.standins import StandIn, slack_sign
from respond.test_actions import DEPLOYER_SECRET, SECRET_ENV
from respond.test_notify import ENV, slack_cfg
from vigil.model import HypothesisState
from vigil.respond import slack_in
from vigil.respond.jobs import Jobs
from vigil.respond.notify.dispatch import Dispatcher

SIGNING = ENV["VIGIL_SECRET_SLACK_SIGNING"]      # Slack's documented example secret
DOC_TS = "1531420618"
DOC_BODY = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
            "channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
            "response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


@pytest.fixture
def world(database_url, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(SECRET_ENV, DEPLOYER_SECRET)
    calls: list = []
    with StandIn(deployer_secret=DEPLOYER_SECRET, on_deploy=calls.append) as s:
        st, svc = setup(database_url)
        svc.judge = _judge(st)
        svc.set_notifier("shop", "slack", True, slack_cfg(s.url), "admin")
        svc.set_action("shop", "webhook", True, {"url": s.url + "/deployer", "secret": {"env": SECRET_ENV}}, "admin")
        inv = concluded(st, "shop")
        Dispatcher(svc).tick()
        s.calls = calls
        yield st, svc, s, inv


def _judge(st):
    def judge(space, inv_id, hyp_id, actor, state, note):
        st.get_investigation(inv_id, space_id=space)
        return st.judge_hypothesis(hyp_id, state, note=note, space_id=space)
    return judge


def _click(user: str, action_id: str, value: str, ts: int | None = None) -> tuple[bytes, dict]:
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower()}, "trigger_id": "1337.42.abcd",
               "team": {"id": "T0001"}, "channel": {"id": "C0INCIDENT"},
               "actions": [{"type": "button", "action_id": action_id, "value": value, "block_id": "b1",
                            "action_ts": str(time.time())}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, slack_sign(SIGNING, body, ts)


def test_slacks_documented_signature_example_verifies(world):
    _st, svc, _s, _inv = world
    hdr = {"x-slack-request-timestamp": DOC_TS, "x-slack-signature": DOC_SIG}
    slack_in.verify(svc, "shop", DOC_BODY.encode(), hdr, now=float(DOC_TS) + 10)
    with pytest.raises(slack_in.SlackRejected, match="does not match"):
        slack_in.verify(svc, "shop", DOC_BODY.encode() + b"&x=1", hdr, now=float(DOC_TS) + 10)
    with pytest.raises(slack_in.SlackRejected, match="older than five minutes"):
        slack_in.verify(svc, "shop", DOC_BODY.encode(), hdr, now=float(DOC_TS) + 301)
    with pytest.raises(slack_in.SlackRejected, match="missing"):
        slack_in.verify(svc, "shop", DOC_BODY.encode(), {}, now=float(DOC_TS))


def test_the_approve_button_runs_the_rollback_once(world):
    st, svc, s, inv = world
    proposed = [a for a in svc.store.list_actions("shop", inv) if a["status"] == "proposed"]
    assert len(proposed) == 1 and proposed[0]["kind"] == "webhook"       # Vigil proposed the spec's rollback
    post = s.of("/slack/api/chat.postMessage")[0].params()
    blk = json.loads(post["blocks"]) if isinstance(post["blocks"], str) else post["blocks"]
    approve = next(e for b in blk if b["type"] == "actions" for e in b["elements"] if e["action_id"] == "action_approve")
    assert approve["value"] == proposed[0]["id"] and approve["style"] == "primary" and approve["confirm"]
    # someone who is not an approver: refused, nothing runs
    body, hdr = _click("U0MALLORY", "action_approve", approve["value"])
    out = slack_in.interactivity(svc, svc.judge, "shop", body, {k.lower(): v for k, v in hdr.items()})
    assert "refused" in out["results"][0] and svc.store.get_action(approve["value"])["status"] == "proposed"
    # the approver: approved, run once
    body, hdr = _click("U0ALICE", "action_approve", approve["value"])
    h = {k.lower(): v for k, v in hdr.items()}
    out = slack_in.interactivity(svc, svc.judge, "shop", body, h)
    assert out["results"][0]["status"] == "approved"
    Jobs(svc).tick()                        # the server's job runner: the queued action runs
    a = svc.store.get_action(approve["value"])
    assert a["status"] == "succeeded" and a["approved_by"] == "slack:U0ALICE (u0alice)"
    assert len(s.calls) == 1 and s.calls[0]["operation"] == "rollback"
    # the very same signed request again (a replay within Slack's five minutes): refused
    out = slack_in.interactivity(svc, svc.judge, "shop", body, h)
    assert "already" in out["results"][0]["refused"]
    assert Jobs(svc).tick() == 0             # nothing queued: the replay ran nothing
    assert len(s.calls) == 1
    assert any(e["action"] == "slack-refused" for e in st.audit_log("shop", 50))


def test_accept_discard_and_note_buttons_change_hypotheses(world):
    st, svc, s, inv = world
    h1, h2 = st.hypotheses(inv)
    for user, aid, hyp in (("U0ALICE", "hyp_accept", h1), ("U0ALICE", "hyp_discard", h2)):
        body, hdr = _click(user, aid, f"{inv}|{hyp.id}")
        slack_in.interactivity(svc, svc.judge, "shop", body, {k.lower(): v for k, v in hdr.items()})
    h1, h2 = st.hypotheses(inv)
    assert h1.state is HypothesisState.ACCEPTED and h2.state is HypothesisState.DISCARDED
    body, hdr = _click("U0ALICE", "hyp_note", f"{inv}|{h1.id}")
    out = slack_in.interactivity(svc, svc.judge, "shop", body, {k.lower(): v for k, v in hdr.items()})
    assert out["results"][0]["modal"]
    view = s.of("/slack/api/views.open")[0].params()
    view = json.loads(view["view"]) if isinstance(view["view"], str) else view["view"]
    sub = {"type": "view_submission", "user": {"id": "U0ALICE"},
           "view": {"callback_id": "hyp_note", "private_metadata": view["private_metadata"],
                    "state": {"values": {"note": {"note": {"type": "plain_text_input", "value": "confirmed in logs"}}}}}}
    body = urlencode({"payload": json.dumps(sub)}).encode()
    hdr = slack_sign(SIGNING, body)
    assert slack_in.interactivity(svc, svc.judge, "shop", body, {k.lower(): v for k, v in hdr.items()}) == {}
    assert st.hypotheses(inv)[0].note == "confirmed in logs"


def test_a_reply_in_the_thread_is_a_chat_question(world):
    st, svc, s, inv = world
    thread = svc.store.thread(inv, "slack")
    ev = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "message", "channel": thread["channel"],
                                                                 "user": "U0BOB", "text": "which logs did you analyze?",
                                                                 "ts": "1700000099.000100",
                                                                 "thread_ts": thread["ts"]}}
    body = json.dumps(ev).encode()
    hdr = {k.lower(): v for k, v in slack_sign(SIGNING, body).items()}
    out = slack_in.events(svc, "shop", body, hdr)
    assert out["intent"] == "data"
    Dispatcher(svc).tick()
    reply = s.of("/slack/api/chat.postMessage")[-1].params()
    assert reply["thread_ts"] == thread["ts"] and "I analyzed" in json.dumps(reply["blocks"])
    chal = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
                      ).encode()
    hdr = {k.lower(): v for k, v in slack_sign(SIGNING, chal).items()}
    assert slack_in.events(svc, "shop", chal, hdr) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
