"""The durable investigation queue, alert de-duplication and grouping, tokens and crash recovery in
the state store, against SQLite and the real PostgreSQL; and the worker pool running real
investigations (time budget, cancellation) on the shipped demo incident."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e.kit import settings_for, wait_for
from sqlalchemy.exc import DBAPIError

from vigil.app import App
from vigil.ingest import discover
from vigil.model import (
    AgentSpace,
    AlertGrouping,
    AlertStatus,
    IncidentStatus,
    IncomingAlert,
    InvestigationStatus,
    JournalKind,
    Policies,
    Role,
    StartingPoint,
)
from vigil.server.runtime import Runtime
from vigil.server.settings import ServerSettings
from vigil.services.alerts import accept_alerts
from vigil.store.state import StateStore, hash_token

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
H, M5 = timedelta(hours=1), timedelta(minutes=5)


@pytest.fixture
def store(database_url):
    s = StateStore(database_url)
    s.put_space(AgentSpace(id="shop"))
    yield s
    s.close()


def alert(fp: str, title: str = "errors", status: AlertStatus = AlertStatus.FIRING, **labels) -> IncomingAlert:
    return IncomingAlert(source="test", fingerprint=fp, title=title, status=status, at=T0, labels=labels)


def test_tokens_are_stored_hashed_and_revocable(store):
    secret, tok = store.create_token("shop", Role.OPERATOR, name="ci")
    assert secret.startswith("vgl_") and len(secret) > 40
    with store.engine.connect() as c:
        raw = c.exec_driver_sql("SELECT hash, name FROM tokens").all()
    assert raw == [(hash_token(secret), "ci")] and secret not in str(raw)
    assert store.resolve_token(secret).role is Role.OPERATOR
    assert store.resolve_token(secret + "x") is None and store.resolve_token("") is None
    store.revoke_token(tok.id)
    assert store.resolve_token(secret) is None
    with pytest.raises(Exception, match="no token"):
        store.revoke_token(tok.id, space_id="other")


def test_an_alert_storm_opens_one_incident_and_one_investigation(store):
    first = accept_alerts(store, "shop", [alert("a")], H, M5)
    assert first[0].outcome == "new-incident" and first[0].investigation_id
    storm = accept_alerts(store, "shop", [alert(f"s{i}", title=f"storm {i}") for i in range(100)] + [alert("a")], H, M5)
    assert {o.outcome for o in storm[:100]} == {"grouped"} and storm[100].outcome == "duplicate"
    assert {o.investigation_id for o in storm} == {first[0].investigation_id}
    assert len(store.list_investigations("shop")) == 1
    assert store.queue_depth()["queued"] == 1
    inc = store.get_incident(first[0].incident_id, "shop")
    assert inc.alert_count == 101 and inc.duplicates == 1 and len(inc.alerts) == 101
    assert next(a for a in inc.alerts if a.fingerprint == "a").receipts == 2


def test_grouping_window_group_by_and_resolution(store):
    store.put_space(AgentSpace(id="shop", alerting=AlertGrouping(window_s=60, group_by=["team"])))
    a = accept_alerts(store, "shop", [alert("a", team="pay")], H, M5, now=T0)[0]
    b = accept_alerts(store, "shop", [alert("b", team="search")], H, M5, now=T0)[0]     # another group
    c = accept_alerts(store, "shop", [alert("c", team="pay")], H, M5, now=T0 + timedelta(seconds=30))[0]
    d = accept_alerts(store, "shop", [alert("d", team="pay")], H, M5, now=T0 + timedelta(seconds=200))[0]  # too late
    assert [x.outcome for x in (a, b, c, d)] == ["new-incident", "new-incident", "grouped", "new-incident"]
    assert c.incident_id == a.incident_id and len({a.incident_id, b.incident_id, d.incident_id}) == 3
    # resolving: the incident closes when all its alerts resolved; unknown resolutions are ignored
    r = accept_alerts(store, "shop", [alert("a", status=AlertStatus.RESOLVED), alert("zz", status=AlertStatus.RESOLVED)],
                            H, M5)
    assert [x.outcome for x in r] == ["resolved", "ignored"]
    assert store.get_incident(a.incident_id, "shop").status is IncidentStatus.OPEN
    accept_alerts(store, "shop", [alert("c", status=AlertStatus.RESOLVED)], H, M5)
    assert store.get_incident(a.incident_id, "shop").status is IncidentStatus.RESOLVED
    # the same fingerprint firing again after resolution is a new incident
    again = accept_alerts(store, "shop", [alert("a", team="pay")], H, M5, now=T0 + timedelta(seconds=210))[0]
    assert again.outcome in ("grouped", "new-incident") and again.incident_id != a.incident_id
    with pytest.raises(Exception, match="no space"):
        accept_alerts(store, "ghost", [alert("x")], H, M5)


def test_accepting_is_all_or_nothing(store, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce column lengths; PostgreSQL rejects the over-long resource")
    ok = alert("ok")
    bad = alert("bad").model_copy(update={"resource": "r" * 400})   # longer than the column
    with pytest.raises(DBAPIError):
        accept_alerts(store, "shop", [ok, bad], H, M5)
    assert store.list_incidents("shop") == [] and store.list_investigations("shop") == []
    assert store.queue_depth()["queued"] == 0


def test_claims_are_exclusive_under_concurrency(store):
    ids = {accept_alerts(store, "shop", [alert(f"x{i}")], H, M5, now=T0 + timedelta(hours=i))[0].investigation_id
           for i in range(20)}
    got: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while (inv := store.claim_job(f"w{n}")) is not None:
            with lock:
                got.append(inv)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)          # each job handed out exactly once
    assert store.queue_depth() == {"queued": 0, "running": 20, "done": 0}


def test_investigations_wait_for_telemetry_after_a_fresh_onset(store):
    store.put_space(AgentSpace(id="shop", policies=Policies(settle_s=1.5)))
    now = datetime.now(UTC)
    fresh = IncomingAlert(source="test", fingerprint="fresh", title="just now", at=now)
    inv = accept_alerts(store, "shop", [fresh], H, M5)[0].investigation_id
    assert store.claim_job("w") is None                     # too early: its telemetry is still arriving
    assert abs((store.next_job_at() - (now + timedelta(seconds=1.5))).total_seconds()) < 0.01
    note = store.journal(inv)[0]
    assert note.kind is JournalKind.NOTE and "waiting until" in note.message
    old = accept_alerts(store, "shop", [alert("old", team="x")], H, M5)   # an onset long past
    assert old[0].outcome == "grouped"                      # (same space, within the window)
    time.sleep(1.6)
    assert store.claim_job("w") == inv


def test_recovery_requeues_running_jobs_and_gives_up_after_max_attempts(store):
    out = accept_alerts(store, "shop", [alert("a"), alert("b", title="other")], H, M5)
    inv = out[0].investigation_id
    assert store.claim_job("crashed-server") == inv
    store.set_status(inv, InvestigationStatus.RUNNING)
    assert store.recover_jobs() == [(inv, "requeued")]
    assert store.get_investigation(inv).status is InvestigationStatus.QUEUED
    assert store.job(inv)["attempts"] == 1 and store.job(inv)["status"] == "queued"
    assert "stopped during attempt 1 of 3" in store.journal(inv)[-1].message
    for _ in range(2):      # two more crashes
        assert store.claim_job("crashed-server") == inv
        store.set_status(inv, InvestigationStatus.RUNNING)
        store.recover_jobs()
    got = store.get_investigation(inv)
    assert got.status is InvestigationStatus.FAILED and "each of 3 attempts" in got.error
    assert store.job(inv)["status"] == "done" and store.journal(inv)[-1].kind is JournalKind.ERROR
    assert store.claim_job("next") is None


# -- the worker pool on real data -----------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_runtime(tmp_path_factory):
    home = tmp_path_factory.mktemp("queue-demo")
    app = App(settings_for(home))
    app.import_recording(discover([REPO / "demo" / "nezha-trainticket"])[0], "demo")
    rt = Runtime(app, ServerSettings(workers=1))
    rt.start()
    yield rt
    rt.stop()


def _finished(rt, inv_id):
    inv = rt.state.get_investigation(inv_id)
    return inv if inv.status.finished else None


def test_workers_run_queued_investigations_and_journal_every_step(demo_runtime):
    rt = demo_runtime
    inv = rt.start_manual("demo", StartingPoint.LATEST_ALARM, datetime(2023, 1, 29, tzinfo=UTC),
                          datetime(2023, 1, 30, tzinfo=UTC), None, "from the test", "test")
    done = wait_for(lambda: _finished(rt, inv.id), 120, 0.1, "the investigation")
    assert done.status in (InvestigationStatus.CONCLUDED, InvestigationStatus.INCONCLUSIVE)
    assert rt.state.hypotheses(inv.id)[0].resource == "ts-preserve-service"
    journal = rt.state.journal(inv.id)
    assert journal[0].kind is JournalKind.NOTE and "latest alarm" in journal[0].message
    assert journal[1].kind is JournalKind.STARTED and journal[-1].kind is JournalKind.CONCLUSION
    job = wait_for(lambda: (lambda j: j if j["status"] == "done" else None)(rt.state.job(inv.id)), 30, 0.05,
                   "the job to be marked done")     # a moment after the investigation itself
    assert job == {"status": "done", "attempts": 1, "max_attempts": 3, "owner": None, "last_error": ""}


def test_every_queued_investigation_gets_a_preliminary_answer_before_any_full_analysis(demo_runtime):
    rt = demo_runtime
    at = datetime(2023, 1, 29, 15, 42, tzinfo=UTC)
    invs = [rt.start_manual("demo", StartingPoint.FREE_TEXT, None, None, at, f"storm #{i}", "test") for i in range(3)]
    for inv in invs:
        done = wait_for(lambda inv=inv: _finished(rt, inv.id), 180, 0.1, "the investigations")
        assert done.status in (InvestigationStatus.CONCLUDED, InvestigationStatus.INCONCLUSIVE)
        assert rt.state.hypotheses(inv.id)[0].resource == "ts-preserve-service"
    journals = {inv.id: rt.state.journal(inv.id) for inv in invs}
    first = {i: next(e.ts for e in j if e.kind is JournalKind.ANALYSIS and e.data.get("preliminary"))
             for i, j in journals.items()}
    concluded = {i: next(e.ts for e in j if e.kind is JournalKind.CONCLUSION) for i, j in journals.items()}
    # one worker: the first two hand it back after their preliminary answer, so every first answer
    # comes before the first full conclusion
    assert max(first.values()) < min(concluded.values())
    for i, j in journals.items():
        assert sum(e.kind is JournalKind.STARTED for e in j) == 1 and j[-1].kind is JournalKind.CONCLUSION
        job = wait_for(lambda i=i: (lambda jb: jb if jb["status"] == "done" else None)(rt.state.job(i)), 30, 0.05,
                       "the job to be marked done")
        assert job["attempts"] == 1          # handing the worker back is not an attempt


def test_cancelling_between_the_preliminary_answer_and_the_full_analysis(demo_runtime):
    rt = demo_runtime
    at = datetime(2023, 1, 29, 15, 42, tzinfo=UTC)
    invs = [rt.start_manual("demo", StartingPoint.FREE_TEXT, None, None, at, f"#{i}", "test") for i in range(3)]
    # one worker: the first hands it back (the note, then its job re-queued) and waits behind the
    # others' preliminary passes
    wait_for(lambda: any(e.kind is JournalKind.NOTE and "waiting for a first answer" in e.message
                         for e in rt.state.journal(invs[0].id)) and rt.state.job(invs[0].id)["status"] == "queued",
             120, 0.01, "the first to hand its worker back")
    assert rt.state.get_investigation(invs[0].id).status is InvestigationStatus.RUNNING
    rt.cancel("demo", invs[0].id, "token:test")
    assert rt.state.get_investigation(invs[0].id).status is InvestigationStatus.CANCELLED
    assert rt.state.job(invs[0].id)["status"] == "done"
    for inv in invs:
        wait_for(lambda inv=inv: _finished(rt, inv.id), 120, 0.1, "both to finish")


def test_the_time_budget_stops_an_investigation(demo_runtime):
    rt = demo_runtime
    space = rt.state.get_space("demo")
    rt.state.put_space(space.model_copy(update={"policies": Policies(investigation_budget_s=0.001)}))
    try:
        inv = rt.start_manual("demo", StartingPoint.FREE_TEXT, None, None, datetime(2023, 1, 29, 15, 42, tzinfo=UTC),
                              "", "test")
        done = wait_for(lambda: _finished(rt, inv.id), 120, 0.1, "the investigation")
    finally:
        rt.state.put_space(space)
    assert done.status is InvestigationStatus.FAILED and "time budget of 0.001 s exceeded" in done.error
    assert rt.state.journal(inv.id)[-1].kind is JournalKind.ERROR
    wait_for(lambda: rt.state.job(inv.id)["status"] == "done", 30, 0.05, "the job to be marked done")


def test_cancelling_queued_and_running_investigations(demo_runtime):
    rt = demo_runtime
    at = datetime(2023, 1, 29, 15, 42, tzinfo=UTC)
    invs = [rt.start_manual("demo", StartingPoint.FREE_TEXT, None, None, at, f"#{i}", "test") for i in range(3)]
    wait_for(lambda: rt.state.get_investigation(invs[0].id).status is not InvestigationStatus.QUEUED, 60, 0.01,
             "the first to start")
    for inv in invs:
        rt.cancel("demo", inv.id, "token:test")
    for inv in invs:
        done = wait_for(lambda inv=inv: _finished(rt, inv.id), 120, 0.1, "cancellation")
        # the first may already have concluded by the time the cancel arrives; the others may not run
        assert done.status in (InvestigationStatus.CANCELLED, InvestigationStatus.CONCLUDED,
                               InvestigationStatus.INCONCLUSIVE)
    assert rt.state.get_investigation(invs[2].id).status is InvestigationStatus.CANCELLED
    assert not any(e.kind is JournalKind.STARTED for e in rt.state.journal(invs[2].id))
    time.sleep(0.2)
    assert rt.state.queue_depth()["queued"] == 0
