"""Approved actions and recovery checks are durable: they are rows of the state database (the outbox's
``vigil.action`` and ``vigil.verify`` jobs), not threads, so a restart of the server between the approval
and the run, or between the run and the recovery check, loses neither, and nothing runs twice.

The first tests "restart" by building a new service over the same database; the last one restarts a real
``vigil serve`` with ``kill -9`` between the approval and the recovery check."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
from e2e.kit import ServeProcess, vigil_cli, wait_for
from sqlalchemy import update

from respond.kit import concluded, setup
from respond.standins import StandIn
from respond.test_actions import DEPLOYER_SECRET, SECRET_ENV, deployer  # noqa: F401 - a fixture
from vigil.respond.jobs import ACTION, VERIFY, Jobs
from vigil.respond.service import RespondService
from vigil.store.state import StateStore
from vigil.store.tables import OutboxRow
from vigil.store.telemetry import TelemetryStore


def _webhook(svc, url: str, for_s: float = 5.0) -> None:
    svc.set_action("shop", "webhook", True, {"url": url, "secret": {"env": SECRET_ENV}, "verify_for_s": for_s,
                                             "verify_timeout_s": 60}, "admin")


def _restart(database_url: str, sources) -> RespondService:
    """A new server process in all but name: its own engine and pool on the same state database."""
    return RespondService(StateStore(database_url), sources)


def _healthy_spans(tel: TelemetryStore, resource: str, n: int = 40, now: float | None = None) -> None:
    t = now if now is not None else time.time()
    df = pd.DataFrame({"trace_id": [uuid.uuid4().hex for _ in range(n)], "span_id": [f"{i:016x}" for i in range(n)],
                       "parent_id": [""] * n, "resource": [resource] * n, "operation": ["POST /orders"] * n,
                       "start": [t - 4.0 + 3.5 * i / n for i in range(n)], "duration_ms": [3.0] * n,
                       "error": [False] * n})
    with tel.transaction() as w:
        w.spans("shop", df)


def _due_now(st: StateStore, notifier: str) -> None:
    with st.session() as s, s.begin():
        s.execute(update(OutboxRow).where(OutboxRow.notifier == notifier).values(next_at=datetime.now(UTC)))


def test_a_queued_approval_and_its_recovery_check_survive_restarts(database_url, deployer):  # noqa: F811
    tel = TelemetryStore()
    st, svc = setup(database_url, sources=tel)
    inv = concluded(st, "shop")
    _webhook(svc, deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    # an approver's click (Slack): approved and queued, not run yet
    q = svc.approve_and_queue("shop", a["id"], "slack:U0ALICE")
    assert q["status"] == "queued" and deployer.calls == []
    jobs = [o for o in svc.outbox("shop", inv) if o["notifier"] == ACTION]
    assert len(jobs) == 1 and jobs[0]["status"] == "pending"

    # the server stops before running it; the next one runs it, once
    svc = _restart(database_url, tel)
    assert Jobs(svc).tick() == 1
    done = svc.action("shop", a["id"])
    assert done["status"] == "succeeded" and done["approved_by"] == "slack:U0ALICE"
    assert len(deployer.calls) == 1 and deployer.calls[0]["approved_by"] == "slack:U0ALICE"
    assert done["recovery"] == {}                          # its check is due in for_s, as a job
    check = [o for o in svc.outbox("shop", inv) if o["notifier"] == VERIFY]
    assert len(check) == 1 and check[0]["status"] == "pending" and check[0]["next_at"] > datetime.now(UTC)
    assert any(e.message.startswith("recovery check of ask the deployer to rollback orders-api due at")
               for e in st.journal(inv))

    # the server stops again before the check is due; the next one checks when it is due
    svc = _restart(database_url, tel)
    assert Jobs(svc).tick() == 0 and svc.action("shop", a["id"])["recovery"] == {}
    _due_now(st, VERIFY)
    assert Jobs(svc).tick() == 0                           # due, but no telemetry yet: checked again later
    again = [o for o in svc.outbox("shop", inv) if o["notifier"] == VERIFY][0]
    assert again["status"] == "pending" and again["last_error"].startswith("not enough data yet")
    _healthy_spans(tel, "orders-api")
    _due_now(st, VERIFY)
    assert Jobs(svc).tick() == 1
    rec = svc.action("shop", a["id"])["recovery"]
    assert rec["recovered"] and rec["message"].startswith("recovered: error ratio of spans of orders-api is 0.0%")
    # nothing runs or is checked twice
    _due_now(st, VERIFY)
    assert Jobs(_restart(database_url, tel)).tick() == 0
    assert len(deployer.calls) == 1
    audit = [e["action"] for e in st.audit_log("shop", 100)]
    assert audit.count("action-verify") == 1 and audit.count("action-result") == 1


def test_an_action_interrupted_mid_run_is_not_run_again(database_url, deployer):  # noqa: F811
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    svc.approve_and_queue("shop", a["id"], "alice")
    # a job runner took it and started it, then its process died (its lease on the job lapsed)
    assert svc.store.start_queued(a["id"])
    assert not svc.store.start_queued(a["id"])             # a second runner cannot start it too
    svc = _restart(database_url, svc.sources)
    assert Jobs(svc).tick() == 1
    out = svc.action("shop", a["id"])
    assert out["status"] == "failed" and out["error"].startswith("interrupted: the server stopped while the action")
    assert deployer.calls == []                            # its effect is unknown: it is not run a second time
    assert any(e.message.startswith("action failed") and "interrupted" in e.message for e in st.journal(inv))


def test_an_action_turned_off_while_queued_does_not_run(database_url, deployer):  # noqa: F811
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    svc.approve_and_queue("shop", a["id"], "alice")
    svc.set_action("shop", "webhook", False, {"url": deployer.url + "/deployer", "secret": {"env": SECRET_ENV}},
                   "admin")
    assert Jobs(svc).tick() == 1
    out = svc.action("shop", a["id"])
    assert out["status"] == "failed" and "is off in space 'shop'" in out["error"] and deployer.calls == []


def _otlp_spans(resource: str, n: int = 25) -> dict:
    now = time.time_ns()
    spans = [{"traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16], "name": "POST /orders", "kind": 2,
              "startTimeUnixNano": str(now - int((n - i) * 4e7)), "endTimeUnixNano": str(now - int((n - i) * 4e7) + 3_000_000),
              "status": {"code": 1}} for i in range(n)]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": resource}}]},
                               "scopeSpans": [{"scope": {"name": "shop"}, "spans": spans}]}]}


def test_vigil_serve_killed_between_the_approval_and_the_recovery_check(tmp_path, monkeypatch):
    home = tmp_path / "vigil"
    assert vigil_cli("space", "create", "shop", home=home).returncode == 0
    admin = vigil_cli("token", "create", "--space", "shop", "--role", "admin", home=home).stdout.strip()
    operator = vigil_cli("token", "create", "--space", "shop", "--role", "operator", home=home).stdout.strip()
    url = f"sqlite:///{home / 'state.db'}"
    inv = concluded(StateStore(url), "shop")
    calls: list[dict] = []
    env = {SECRET_ENV: DEPLOYER_SECRET, "VIGIL_OUTBOX_INTERVAL_S": "0.5"}
    with StandIn(deployer_secret=DEPLOYER_SECRET, on_deploy=calls.append) as s:
        vigil = ServeProcess(home, env=env).start()
        try:
            with vigil.client(admin) as c:
                r = c.put("/v1/spaces/shop/action-settings/webhook", json={"enabled": True, "config": {
                    "url": s.url + "/deployer", "secret": {"env": SECRET_ENV}, "verify_for_s": 8,
                    "verify_timeout_s": 120}})
                assert r.status_code == 200, r.text
            with vigil.client(operator) as o:
                r = o.post(f"/v1/spaces/shop/investigations/{inv}/actions",
                           json={"kind": "webhook", "args": {"operation": "rollback", "service": "orders-api"}})
                assert r.status_code in (200, 201), r.text
                aid = r.json()["id"]
                token = o.post(f"/v1/spaces/shop/actions/{aid}/approve").json()["token"]
                r = o.post(f"/v1/spaces/shop/actions/{aid}/run", json={"token": token})
                assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
                assert r.json()["recovery"] == {} and len(calls) == 1
            # the server dies before the check is due (8 s after the action)
            vigil.kill9()
            pending = [o for o in RespondService(StateStore(url), None).outbox("shop", inv) if o["notifier"] == VERIFY]
            assert len(pending) == 1 and pending[0]["status"] == "pending"
            vigil = ServeProcess(home, env=env).start()
            # the service is healthy again: its spans arrive over OTLP until the check says so
            with vigil.client(operator) as o:
                def recovered():
                    assert o.post("/v1/traces", json=_otlp_spans("orders-api")).status_code == 200
                    a = o.get(f"/v1/spaces/shop/actions/{aid}").json()
                    return a if a["recovery"].get("recovered") else None
                a = wait_for(recovered, 90, 1.0, "the recovery check after the restart")
            assert a["recovery"]["message"].startswith("recovered: error ratio of spans of orders-api is 0.0%")
            assert a["status"] == "succeeded" and len(calls) == 1
            with vigil.client(admin) as c:
                audit = [e["action"] for e in c.get("/v1/spaces/shop/audit", params={"limit": 200}).json()]
            assert audit.count("action-verify") == 1 and audit.count("action-run") == 1
        finally:
            vigil.stop()


def test_a_run_that_dies_midway_is_found_interrupted_when_its_lease_lapses(database_url, deployer, monkeypatch):  # noqa: F811
    """The API's and the console's runs happen in the request, under a leased job written with the token's
    use: a server that dies mid-run leaves the job leased; once the lease lapses the next server marks the
    action interrupted instead of leaving it 'running' for ever (and does not run it)."""
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, deployer.url + "/deployer")
    ok = svc.propose("shop", inv, "webhook", {"operation": "restart", "service": "orders-api"}, "op")
    done = svc.approve_and_run("shop", ok["id"], "alice", verify_async=False)
    assert done["status"] == "succeeded"
    assert [o["status"] for o in svc.outbox("shop", inv) if o["notifier"] == ACTION] == ["sent"]   # its job is done

    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    token, _ = svc.approve("shop", a["id"], "alice")

    def dies(*_a, **_k):
        raise SystemExit("the server process died here")
    monkeypatch.setattr(RespondService, "_execute", dies)
    with pytest.raises(SystemExit):
        svc.run("shop", a["id"], token, "alice")
    monkeypatch.undo()
    assert svc.action("shop", a["id"])["status"] == "running"
    svc = _restart(database_url, svc.sources)
    assert Jobs(svc).tick() == 0                           # its lease has not lapsed: it may still be running
    with st.session() as s, s.begin():
        s.execute(update(OutboxRow).where(OutboxRow.notifier == ACTION, OutboxRow.status == "pending")
                  .values(claimed_until=datetime.now(UTC)))
    assert Jobs(svc).tick() == 1
    out = svc.action("shop", a["id"])
    assert out["status"] == "failed" and out["error"].startswith("interrupted")
    assert len(deployer.calls) == 1                        # only the first action ever reached the deployer
