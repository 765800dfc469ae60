"""Alert storms (issue #13): a 5,000-alert delivery is recorded whole but summarised in the journal, and one
space's storm does not stall another space's API."""

from __future__ import annotations

import time

import pytest
from e2e.kit import live_server

from vigil.model import AlertOutcome, IncomingAlert, JournalKind, Role
from vigil.server.alertnotes import AlertNotes


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("storm"), workers=1) as lv:
        yield lv


def storm(n: int, status: str = "firing", prefix: str = "fp") -> dict:
    """One Alertmanager (v4) delivery of ``n`` alerts of one group, as a storm sends them."""
    return {"version": "4", "groupKey": '{}:{alertname="PodDown"}', "status": status, "receiver": "vigil",
            "groupLabels": {"alertname": "PodDown"}, "commonLabels": {"alertname": "PodDown"}, "commonAnnotations": {},
            "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": {"service": f"svc{i % 50}", "pod": f"pod-{i}"},
                        "annotations": {"summary": f"pod down on svc{i % 50}"},
                        "startsAt": "2026-01-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prom/graph", "fingerprint": f"{prefix}{i}"} for i in range(n)]}


def notes(client, space: str, inv: str) -> list[dict]:
    journal = client.get(f"/v1/spaces/{space}/investigations/{inv}/journal").json()
    return [j for j in journal if j["data"].get("outcome") in ("grouped", "duplicate", "resolved")]


def test_a_5000_alert_delivery_is_stored_whole_and_summarised_in_the_journal(live):
    live.space("flood")
    op = live.token("flood", Role.OPERATOR)
    with live.client(op) as c:
        r = c.post("/v1/spaces/flood/webhooks/alertmanager", json=storm(5000))
        assert r.status_code == 202, r.text[:300]
        out = r.json()["outcomes"]
        assert r.json()["accepted"] == 5000 and len(out) == 5000
        assert [o["outcome"] for o in out].count("new-incident") == 1
        assert [o["outcome"] for o in out].count("grouped") == 4999
        inv, inc = out[0]["investigation_id"], out[0]["incident_id"]
        # every alert is stored and counted on its incident
        incident = c.get(f"/v1/spaces/flood/incidents/{inc}").json()
        assert incident["alert_count"] == 5000 and len(incident["alerts"]) == 5000
        assert {a["fingerprint"] for a in incident["alerts"]} == {f"alertmanager:fp{i}" for i in range(5000)}
        # ... and the journal has one entry for the 4,999 that joined, not one each
        got = notes(c, "flood", inv)
        assert len(got) == 1, [j["message"] for j in got[:5]]
        assert got[0]["data"]["count"] == 4999 and got[0]["data"]["incident"] == inc
        assert got[0]["message"].startswith("4999 related alerts joined the incident: pod down on svc1")
        assert len(got[0]["data"]["sample"]["fingerprints"]) == 5
        # the same storm again and then resolved, at once: held and written together after the interval
        assert c.post("/v1/spaces/flood/webhooks/alertmanager", json=storm(5000)).status_code == 202
        r = c.post("/v1/spaces/flood/webhooks/alertmanager", json=storm(5000, "resolved"))
        assert {o["outcome"] for o in r.json()["outcomes"]} == {"resolved"}
        assert c.get(f"/v1/spaces/flood/incidents/{inc}").json()["status"] == "resolved"
        live.runtime.alert_notes.flush(everything=True)
        got = notes(c, "flood", inv)
        assert [(j["data"]["outcome"], j["data"]["count"]) for j in got] == [
            ("grouped", 4999), ("duplicate", 5000), ("resolved", 5000)]
        assert c.get(f"/v1/spaces/flood/incidents/{inc}").json()["duplicates"] == 5000


def test_notes_are_coalesced_per_interval_and_none_is_lost_at_shutdown():
    written: list[tuple[str, str, dict]] = []

    def write(inv, kind, message, source, data):
        assert kind is JournalKind.NOTE and source == "generic webhook (signed)"
        written.append((inv, message, data))

    notes = AlertNotes(write, interval_s=0.3)

    def deliver(i: int, outcome: str = "grouped", inv: str = "inv_a") -> None:
        a = IncomingAlert(source="generic", fingerprint=f"g:{i}", title=f"alert {i % 3}", at="2026-01-01T00:00:00Z")
        notes.add([AlertOutcome(fingerprint=a.fingerprint, outcome=outcome, incident_id="inc_1",
                                investigation_id=inv)], [a], "generic webhook (signed)")

    deliver(0)                                      # the first is written at once
    assert [(m, d["count"]) for _, m, d in written] == [("a related alert joined the incident: alert 0", 1)]
    for i in range(1, 200):                         # 199 deliveries of one alert each, within the interval
        deliver(i)
    deliver(500, "duplicate")
    deliver(7, inv="inv_b")                         # another investigation is not held back by inv_a
    assert len(written) == 2 and written[1][0] == "inv_b"
    assert notes.held() == 200
    deadline = time.monotonic() + 10
    while len(written) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(inv, d["outcome"], d["count"]) for inv, _, d in written[2:]] == [
        ("inv_a", "grouped", 199), ("inv_a", "duplicate", 1)]
    assert written[2][2]["sample"]["titles"] == {"alert 1": 67, "alert 2": 66, "alert 0": 66}
    assert written[2][0] == "inv_a" and written[2][1].startswith("199 related alerts joined the incident: alert 1 ×67")
    for i in range(1000, 1010):
        deliver(i)
    notes.stop()                                    # shutdown writes what is held
    assert notes.held() == 0 and written[-1][2]["count"] == 10 and len(written) == 5
