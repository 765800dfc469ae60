"""Scale-out end to end, with real processes and no containers: TWO `vigil serve` replicas and THREE
`vigil worker`s on PostgreSQL (a fresh schema) and RabbitMQ. Alerts and OTLP telemetry go in through
both replicas; every investigation concludes on the workers; a console session opened on one replica
works on the other (and signing out on one ends it on both); a worker killed with SIGKILL in the middle
of an investigation has its task redelivered, and the journal has each step once."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from e2e.kit import read_events, wait_for

from scaleout.kit import REPO, Deployment, owner_pid
from vigil.store.state import StateStore

AT = "2023-01-29T15:42:00Z"
FINISHED = ("concluded", "inconclusive", "failed", "cancelled")


def _am(name: str, service: str) -> dict:
    return {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": name, "service": service},
        "annotations": {"summary": f"{name} on {service}"}, "startsAt": AT, "fingerprint": f"fp-{name}"}]}


def _otlp_logs(service: str) -> dict:
    return {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                              "scopeLogs": [{"logRecords": [{"timeUnixNano": str(time.time_ns()),
                                                             "severityText": "ERROR",
                                                             "body": {"stringValue": f"boom in {service}"}}]}]}]}


def _otlp_spans(service: str) -> dict:
    now = time.time_ns()
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
                                                          "spanId": "eee19b7ec3c1b174", "name": "GET /x",
                                                          "startTimeUnixNano": str(now - 5_000_000),
                                                          "endTimeUnixNano": str(now), "kind": 2}]}]}]}


def test_two_replicas_three_workers_postgresql_rabbitmq(tmp_path):
    dep = Deployment(tmp_path / "home", broker="amqp", VIGIL_JOB_LEASE_S="5")
    state = None
    try:
        p = dep.cli("import", str(REPO / "demo" / "nezha-trainticket"), "--space", "demo")
        assert p.returncode == 0, p.stderr
        token = dep.cli("token", "create", "--space", "demo", "--role", "admin", "--name", "e2e").stdout.split()[0]
        a, b = dep.serve(), dep.serve()
        workers = [dep.worker() for _ in range(3)]
        state = StateStore(dep.database_url)
        H = {"Authorization": f"Bearer {token}"}
        ca, cb = httpx.Client(base_url=a.url, headers=H, timeout=30), httpx.Client(base_url=b.url, headers=H, timeout=30)
        assert ca.get("/readyz").json()["checks"] == {"state": "ok", "telemetry": "ok", "broker": "ok"}

        # -- telemetry through both replicas lands in one store -----------------------------------
        for c, svc in ((ca, "otlp-via-a"), (cb, "otlp-via-b")):
            assert c.post("/v1/logs", json=_otlp_logs(svc)).status_code == 200
            assert c.post("/v1/traces", json=_otlp_spans(svc)).status_code == 200
        for c in (ca, cb):
            names = {r["name"] for r in c.get("/v1/spaces/demo/topology").json()["resources"]}
            assert {"otlp-via-a", "otlp-via-b"} <= names

        # -- alerts through both replicas: one incident store, deduplicated across replicas --------
        assert ca.patch("/v1/spaces/demo", json={"alerting": {"group_by": ["alertname"]}}).status_code == 200
        inv_ids = []
        for i in range(6):
            c = (ca, cb)[i % 2]
            r = c.post("/v1/spaces/demo/webhooks/alertmanager", json=_am(f"Storm{i}", "ts-preserve-service"))
            assert r.status_code == 202, r.text
            out = r.json()["outcomes"][0]
            assert out["outcome"] == "new-incident"
            inv_ids.append(out["investigation_id"])
        again = cb.post("/v1/spaces/demo/webhooks/alertmanager", json=_am("Storm0", "ts-preserve-service"))
        assert again.json()["outcomes"][0]["outcome"] == "duplicate"       # first seen by the other replica

        # -- kill -9 a worker in the middle of one of them -------------------------------------------
        def under_way():
            for inv_id in inv_ids:
                job = state.job(inv_id) or {}
                kinds = [e.kind.value for e in state.journal(inv_id)]
                if job.get("status") == "running" and "query" in kinds and "conclusion" not in kinds:
                    return inv_id, job
            return None
        victim_inv, job = wait_for(under_way, timeout=180, interval=0.02, what="an investigation under way")
        victim = next(w for w in workers if w.pid == owner_pid(job["owner"]))
        victim.kill9()

        # -- every investigation concludes, on the workers that are left -----------------------------
        def all_done():
            invs = [ca.get(f"/v1/spaces/demo/investigations/{i}").json() for i in inv_ids]
            return invs if all(x["status"] in FINISHED for x in invs) else None
        invs = wait_for(all_done, timeout=400, interval=0.5, what="every investigation to finish")
        assert [x["status"] for x in invs] == ["concluded"] * 6, dep.logs()
        assert all("ts-preserve-service" in x["summary"] for x in invs), [x["summary"] for x in invs]
        for inv_id in inv_ids:
            journal = cb.get(f"/v1/spaces/demo/investigations/{inv_id}/journal").json()
            kinds = [e["kind"] for e in journal]
            assert kinds.count("started") == 1 and kinds.count("conclusion") == 1, (inv_id, kinds)
            assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))
        killed = cb.get(f"/v1/spaces/demo/investigations/{victim_inv}").json()
        assert killed["job"]["attempts"] >= 2
        messages = [e["message"] for e in cb.get(f"/v1/spaces/demo/investigations/{victim_inv}/journal").json()]
        assert any(f":{victim.pid}:" in m and "resumes it" in m for m in messages), messages
        # the live journal of an investigation a worker ran, streamed by a replica that did not run it
        events = read_events(ca, f"/v1/spaces/demo/investigations/{victim_inv}/events", timeout=60)
        assert events[-1][0] == "end" and any(ev == "journal" for ev, _id, _d in events)

        # -- a console session opened on one replica works on the other -----------------------------
        ua = httpx.Client(base_url=a.url, timeout=30)
        page = ua.get("/ui/login")
        nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
        r = ua.post("/ui/login", data={"login_csrf": nonce, "token": token, "next": ""})
        assert r.status_code == 303, r.text
        cookie = {"vigil_session": ua.cookies.get("vigil_session")}
        ub = httpx.Client(base_url=b.url, timeout=30, cookies=cookie)
        home = ub.get("/ui/s/demo/")
        assert home.status_code == 200 and "Storm" in home.text, home.text[:500]
        csrf = re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)
        assert ub.post("/ui/logout", data={"csrf": csrf}).status_code == 303
        after = httpx.Client(base_url=a.url, timeout=30, cookies=cookie).get("/ui/s/demo/")
        assert after.status_code == 303 and "/ui/login" in after.headers["location"]
        assert all(w.alive() for w in workers if w is not victim)
        assert Path(dep.home).exists()
    finally:
        if state is not None:
            state.close()
        dep.close()
