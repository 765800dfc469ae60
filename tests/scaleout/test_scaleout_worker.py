"""`vigil worker` and the broker, with real processes: RabbitMQ and Redis, PostgreSQL, `kill -9`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from e2e.kit import wait_for

from scaleout.kit import REPO, Deployment, owner_pid
from vigil.store.state import StateStore

AT = "2023-01-29T15:42:00Z"


@pytest.fixture
def deployment(tmp_path, request):
    dep = Deployment(tmp_path / "home", broker=getattr(request, "param", "amqp"), VIGIL_JOB_LEASE_S="4",
                     VIGIL_FIRST_ANSWER_WINDOW_S="0")
    p = dep.cli("import", str(REPO / "demo" / "nezha-trainticket"), "--space", "demo")
    assert p.returncode == 0, p.stderr
    yield dep
    dep.close()


def _token(dep: Deployment) -> str:
    p = dep.cli("token", "create", "--space", "demo", "--role", "admin", "--name", "t")
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[0]


def _journal(c, inv_id: str) -> list[dict]:
    r = c.get(f"/v1/spaces/demo/investigations/{inv_id}/journal")
    assert r.status_code == 200, r.text
    return r.json()


def _finished(c, inv_id: str):
    inv = c.get(f"/v1/spaces/demo/investigations/{inv_id}").json()
    return inv if inv["status"] in ("concluded", "inconclusive", "failed", "cancelled") else None


def _children(pid: int) -> list[int]:
    out = []
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(x) for x in f.read_text().split()]
        except OSError:
            pass
    return out


def _running(pid: int) -> bool:
    try:
        return "(zombie)" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_kill_9_of_a_worker_mid_investigation_is_redelivered_and_its_journal_not_duplicated(deployment):
    dep = deployment
    token = _token(dep)
    serve = dep.serve()
    first = dep.worker()
    state = StateStore(dep.database_url)
    try:
        with serve.client(token) as c:
            # a run nobody interrupts: the journal a run writes
            clean = c.post("/v1/spaces/demo/investigations", json={"starting_point": "free-text", "at": AT}).json()
            done = wait_for(lambda: _finished(c, clean["id"]), timeout=180, interval=0.2, what="the clean run",)
            assert done["status"] == "concluded", dep.logs()
            clean_kinds = [e["kind"] for e in _journal(c, clean["id"])]

            second = dep.worker()
            inv = c.post("/v1/spaces/demo/investigations", json={"starting_point": "free-text", "at": AT}).json()

            def mid_run():
                job = state.job(inv["id"]) or {}
                kinds = [e["kind"] for e in _journal(c, inv["id"])]
                return job if job.get("status") == "running" and "query" in kinds and "conclusion" not in kinds \
                    else None
            job = wait_for(mid_run, timeout=120, interval=0.02, what="the run to be under way")
            pid = owner_pid(job["owner"])
            victim = next(w for w in (first, second) if w.pid == pid)
            survivor = second if victim is first else first
            analysts = _children(victim.pid)
            victim.kill9()                              # mid-investigation: no acknowledgement was sent

            done = wait_for(lambda: _finished(c, inv["id"]), timeout=180, interval=0.2, what="the redelivered run")
            assert done["status"] == "concluded", dep.logs()
            assert done["job"]["attempts"] == 2 and done["job"]["status"] == "done"
            journal = _journal(c, inv["id"])
            resumed = [e for e in journal if e["kind"] == "warning" and "attempt 2 resumes" in e["message"]]
            assert len(resumed) == 1, [e["message"] for e in journal]
            assert str(pid) in resumed[0]["message"]
            # each step once: apart from the note that it resumed, the journal reads like the clean run's
            assert [e["kind"] for e in journal if e is not resumed[0]] == clean_kinds
            assert sum(e["kind"] == "started" for e in journal) == 1
            assert sum(e["kind"] == "conclusion" for e in journal) == 1
            assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))
            assert done["summary"] == _finished(c, clean["id"])["summary"]
            # the dead worker's analysis processes went with it (their pipe closed): nothing else writes
            wait_for(lambda: not any(_running(p) for p in analysts), timeout=30, what="orphaned analysts to exit")
            assert survivor.alive()
    finally:
        state.close()


@pytest.mark.parametrize("deployment", ["redis"], indirect=True)
def test_an_alert_is_investigated_by_a_worker_on_redis(deployment):
    dep = deployment
    token = _token(dep)
    serve = dep.serve()
    dep.worker(concurrency=2)
    alert = {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": "HighCPU", "service": "ts-preserve-service"},
        "annotations": {"summary": "CPU"}, "startsAt": AT, "fingerprint": "fp-redis"}]}
    with serve.client(token) as c:
        r = c.post("/v1/spaces/demo/webhooks/alertmanager", json=alert)
        assert r.status_code == 202, r.text
        inv_id = r.json()["outcomes"][0]["investigation_id"] if "outcomes" in r.json() else \
            c.get("/v1/spaces/demo/investigations").json()[0]["id"]
        done = wait_for(lambda: _finished(c, inv_id), timeout=180, interval=0.2, what="the alert's investigation")
        assert done["status"] == "concluded", dep.logs()
        assert "ts-preserve-service" in done["summary"]


def test_worker_without_a_broker_or_on_sqlite_is_one_line(tmp_path):
    from e2e.kit import vigil_cli
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_BROKER_URL", "VIGIL_DATABASE_URL")}
    p = vigil_cli("worker", home=tmp_path / "h", env={**env, "VIGIL_BROKER_URL": ""})
    assert p.returncode == 2 and "VIGIL_BROKER_URL" in p.stderr and "Traceback" not in p.stderr
    p = vigil_cli("worker", home=tmp_path / "h", env={**env, "VIGIL_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert p.returncode == 2 and "PostgreSQL" in p.stderr and "Traceback" not in p.stderr
    p = vigil_cli("worker", home=tmp_path / "h", env={**env, "VIGIL_BROKER_URL": "http://nope"})
    assert p.returncode == 2 and "amqp://" in p.stderr and "Traceback" not in p.stderr
    dep = Deployment(tmp_path / "h2")
    try:
        start = time.monotonic()
        p = vigil_cli(
            "worker", home=dep.home, env={**dep.env, "VIGIL_BROKER_URL": "amqp://guest:secret@127.0.0.1:1//"})
        assert p.returncode == 2 and "cannot reach the broker" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert "secret" not in p.stderr
        assert time.monotonic() - start < 60
    finally:
        dep.close()
