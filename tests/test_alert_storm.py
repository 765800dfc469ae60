"""Alert storms (issue #13): a 5,000-alert delivery is recorded whole but summarised in the journal, and one
space's storm does not stall another space's API (per-space admission, reads that never wait for a write)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from e2e.kit import ServeProcess, live_server

from vigil.model import AgentSpace, AlertOutcome, IncomingAlert, JournalKind, Role
from vigil.server.admission import Admission, Busy
from vigil.server.alertnotes import AlertNotes
from vigil.store.state import StateStore


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


# -- per-space fairness -----------------------------------------------------------------------------
def test_one_spaces_storm_does_not_stall_another_spaces_api(tmp_path):
    """Space A receives four 5,000-alert deliveries at once while space B's API is used: B's requests are
    answered within a generous bound (they took up to 10-12 s before: every read waited for A's writes,
    and each of A's alerts was a journal transaction), and every alert of A is recorded."""
    home = tmp_path / "home"
    home.mkdir()
    st = StateStore(f"sqlite:///{home / 'state.db'}")
    for sp in ("a", "b"):
        st.put_space(AgentSpace(id=sp, name=sp))
    op_a = st.create_token("a", Role.OPERATOR)[0]
    op_b = st.create_token("b", Role.OPERATOR)[0]
    st.close()
    bodies = [json.dumps(storm(5000, prefix=f"d{k}-")).encode() for k in range(4)]
    srv = ServeProcess(home, workers=1).start()
    try:
        lat: list[float] = []
        stop = threading.Event()

        def use_b() -> None:
            with srv.client(op_b) as c:
                for _ in range(5):                           # warm: the first requests of a process are slow
                    c.get("/v1/spaces/b/investigations")
                while not stop.is_set():
                    t0 = time.perf_counter()
                    assert c.get("/v1/spaces/b/investigations").status_code == 200
                    assert c.get("/v1/spaces/b/incidents").status_code == 200
                    lat.append(time.perf_counter() - t0)
                    time.sleep(0.02)

        answers: list[int] = []

        def flood(body: bytes) -> None:
            with httpx.Client(base_url=srv.url, timeout=300, headers={"Authorization": f"Bearer {op_a}",
                                                                       "Content-Type": "application/json"}) as c:
                answers.append(c.post("/v1/spaces/a/webhooks/alertmanager", content=body).status_code)

        b = threading.Thread(target=use_b)
        b.start()
        while len(lat) < 5:
            time.sleep(0.05)
        before = len(lat)
        floods = [threading.Thread(target=flood, args=(body,)) for body in bodies]
        for t in floods:
            t.start()
        for t in floods:
            t.join()
        stop.set()
        b.join()
        during = sorted(lat[before:])
        assert answers == [202] * 4
        assert len(during) >= 5, during
        p50, worst = during[len(during) // 2], during[-1]
        # generous for a machine shared with other jobs (load average 10-25 on 2 cores when this was written)
        assert p50 < 1.0 and worst < 5.0, f"space B's API during A's storm: p50 {p50:.2f} s, max {worst:.2f} s"
        with srv.client(op_a) as c:
            incs = c.get("/v1/spaces/a/incidents").json()
            assert sum(i["alert_count"] for i in incs) == 20000
    finally:
        srv.stop()


def test_admission_bounds_a_spaces_concurrent_ingest_and_never_holds_back_another_space():
    async def main():
        adm = Admission(per_space=2, total=3, queue=2, wait_s=5.0)
        running = {"a": 0, "b": 0}
        peak = {"a": 0, "b": 0}
        order: list[str] = []
        gate = asyncio.Event()

        async def job(space: str, name: str):
            async with adm.slot(space):
                running[space] += 1
                peak[space] = max(peak[space], running[space])
                order.append(name)
                await gate.wait()
                running[space] -= 1

        a_jobs = [asyncio.create_task(job("a", f"a{i}")) for i in range(4)]    # 2 run, 2 wait
        await asyncio.sleep(0.05)
        assert order == ["a0", "a1"] and adm.waiting("a") == 2
        with pytest.raises(Busy):                        # a fifth would be the third waiting: refused at once
            async with adm.slot("a"):
                pass
        b_job = asyncio.create_task(job("b", "b0"))     # another space is not behind a's queue
        await asyncio.sleep(0.05)
        assert order == ["a0", "a1", "b0"]
        gate.set()
        await asyncio.gather(*a_jobs, b_job)
        assert peak == {"a": 2, "b": 1} and order[3:] == ["a2", "a3"] and adm.rejected == 1
        slow = Admission(per_space=1, total=1, queue=5, wait_s=0.1)
        hold = asyncio.Event()

        async def holder():
            async with slow.slot("a"):
                await hold.wait()

        h = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        with pytest.raises(Busy) as exc:                 # waited past wait_s: 503 with Retry-After
            async with slow.slot("a"):
                pass
        assert exc.value.retry_after > 0 and slow.waiting("a") == 0
        hold.set()
        await h

    asyncio.run(main())
