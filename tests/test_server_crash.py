"""Crash recovery with real processes: `vigil serve` is killed with SIGKILL while investigations are
queued and running and alerts keep arriving; after a restart every accepted alert is there and every
investigation finishes. Runs against SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from e2e.kit import ServeProcess, vigil_cli, wait_for
from sqlalchemy import create_engine, text

from vigil.store.state import StateStore

REPO = Path(__file__).resolve().parent.parent
PG_URL = __import__("os").environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request):
    if request.param == "sqlite":
        yield {}
        return
    schema = f"vigil_crash_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield {"VIGIL_DATABASE_URL": f"{PG_URL}?options=-csearch_path%3D{schema}"}
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


STORM_NAMES = 6      # distinct alerts in the storm: with the 4 manual runs, 10 investigations at most


def _running(pid: int) -> bool:
    try:
        return "(zombie)" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _am(name: str) -> dict:
    return {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": name, "service": "ts-travel-service"},
        "annotations": {"summary": name}, "startsAt": "2023-01-29T15:42:00Z", "fingerprint": name}]}


def test_kill_9_while_investigations_run_loses_nothing(tmp_path, db_env):
    home = tmp_path / "home"
    p = vigil_cli("import", str(REPO / "demo" / "nezha-trainticket"), "--space", "demo", home=home, env=db_env)
    assert p.returncode == 0, p.stderr
    admin = vigil_cli("token", "create", "--space", "demo", "--role", "admin", home=home, env=db_env).stdout.strip()
    # durability, not scheduling, is under test (test_server_queue covers first answers first): with no
    # first-answer window each run goes on to its full analysis, so the storm below stays small
    db_env = {**db_env, "VIGIL_FIRST_ANSWER_WINDOW_S": "0"}
    serve = ServeProcess(home, env=db_env, workers=1).start()
    H = {"Authorization": f"Bearer {admin}"}
    try:
        with serve.client(admin) as c:
            # every alert name its own incident, so each accepted alert queues its own investigation
            assert c.patch("/v1/spaces/demo", json={"alerting": {"group_by": ["alertname"]}}).status_code == 200
            manual = [c.post("/v1/spaces/demo/investigations", json={"starting_point": "free-text",
                                                                     "at": "2023-01-29T15:42:00Z"}).json()["id"]
                      for _ in range(4)]
        accepted: list[str] = []
        stop = threading.Event()

        def storm() -> None:     # alerts keep arriving until the server dies
            # STORM_NAMES distinct alerts, each its own incident and investigation, then the same alerts
            # firing again (duplicates of open incidents: recorded, no new investigation). The number of
            # investigations to finish after the restart stays the same however slow the machine is
            # (with a new name every 50 ms it grew with the time the first analysis took: ~100-200 runs).
            i = 0
            while not stop.is_set():
                name = f"Alert{i % STORM_NAMES}"
                try:
                    r = httpx.post(serve.url + "/v1/spaces/demo/webhooks/alertmanager", json=_am(name), headers=H,
                                   timeout=5)
                    if r.status_code == 202:
                        accepted.append(name)
                except httpx.HTTPError:
                    pass
                i += 1
                time.sleep(0.05)

        sender = threading.Thread(target=storm)
        sender.start()

        def mid_run():
            with serve.client(admin) as c:
                invs = c.get("/v1/spaces/demo/investigations", params={"limit": 500}).json()
            statuses = [i["status"] for i in invs]
            return "running" in statuses and "queued" in statuses and \
                sum(s in ("concluded", "inconclusive") for s in statuses) >= 1 and len(accepted) >= 5
        wait_for(mid_run, 120, 0.05, "investigations both running and queued")
        analysts = serve.children()
        assert analysts, "the worker runs its analysis in a child process"
        serve.kill9()
        stop.set()
        sender.join()

        # the analysts go with the server (their pipe closes); none keeps running on its own
        wait_for(lambda: not any(_running(pid) for pid in analysts), 15, 0.1, "the orphaned analysts to exit")
        # what the crash left: a running job, queued ones, every accepted alert recorded
        st = StateStore(db_env.get("VIGIL_DATABASE_URL") or f"sqlite:///{home / 'state.db'}")
        depth = st.queue_depth()
        assert depth["running"] == 1 and depth["queued"] >= 1, depth
        # the job the crash interrupted (investigations that gave a preliminary answer are "running" too,
        # their jobs queued again for the full analysis)
        interrupted = [i.id for i in st.list_investigations("demo", limit=500)
                       if (st.job(i.id) or {}).get("status") == "running"]
        assert len(interrupted) == 1
        recorded = {a.fingerprint for inc in st.list_incidents("demo", limit=1000)
                    for a in st.get_incident(inc.id, "demo").alerts}
        assert {f"alertmanager:{n}" for n in accepted} <= recorded
        total = len(st.list_investigations("demo", limit=1000))
        assert total == len(manual) + len(recorded)
        st.close()

        # restart: everything finishes, the interrupted one on its second attempt
        serve = ServeProcess(home, port=serve.port, env=db_env, workers=1).start()
        with serve.client(admin) as c:
            def all_done():
                invs = c.get("/v1/spaces/demo/investigations", params={"limit": 500}).json()
                return invs if all(i["status"] not in ("queued", "running") for i in invs) else None
            invs = wait_for(all_done, 300, 0.5, "every investigation to finish after the restart")
            assert len(invs) == total
            assert {i["status"] for i in invs} <= {"concluded", "inconclusive"}, [(i["id"], i["error"]) for i in invs]
            again = c.get(f"/v1/spaces/demo/investigations/{interrupted[0]}").json()
            assert again["job"]["attempts"] == 2 and again["job"]["status"] == "done"
            journal = c.get(f"/v1/spaces/demo/investigations/{interrupted[0]}/journal").json()
            assert any(j["kind"] == "warning" and "stopped during attempt 1" in j["message"] for j in journal)
            assert sum(j["kind"] == "started" for j in journal) == 2 and journal[-1]["kind"] == "conclusion"
            top = c.get(f"/v1/spaces/demo/investigations/{interrupted[0]}/hypotheses").json()[0]
            assert top["resource"] == "ts-preserve-service"
            for inv_id in manual:
                assert c.get(f"/v1/spaces/demo/investigations/{inv_id}").json()["job"]["status"] == "done"
    finally:
        serve.stop()
