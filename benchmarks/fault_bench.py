"""Fault benchmark (issue #13; a script, not a test): faults under load, and whether anything accepted was
lost or half-written.

Scenarios (``--only`` picks some; all by default):
  worker-kill     scale-out (PostgreSQL + RabbitMQ, 2 ``vigil worker``s): a worker killed with SIGKILL in the
                  middle of an investigation; a new worker is started. Its investigation must conclude with
                  each journal step once.
  pg-restart      scale-out: PostgreSQL restarted (``pg_ctlcluster 15 main restart``: a short outage; other
                  users of the cluster see their connections reset) while alerts arrive.
  broker-restart  scale-out: RabbitMQ's app stopped for ``--outage`` seconds (``rabbitmqctl stop_app`` /
                  ``start_app``) while alerts arrive.
  bad-sources     embedded: a space whose Prometheus source hangs (accepts the connection, never answers)
                  and whose Loki source answers garbage; its investigations must still conclude, within
                  the time budget, saying what was missing.
  full-disk       embedded: ``VIGIL_HOME`` on a 2 MiB tmpfs (``mount -t tmpfs -o size=2m``; needs root),
                  telemetry and alerts sent until the disk is full, then space freed.

Alerts are sent as Alertmanager deliveries (operator token), retried while the answer is a 5xx or the
connection fails, as Alertmanager does. For each scenario it prints the alerts accepted (202) against
those stored (fingerprints found on the space's incidents), the investigations opened against those
concluded, journal steps written twice, and whether the server still answered.

Usage: .venv/bin/python benchmarks/fault_bench.py [--only worker-kill,bad-sources] [--json out/faults.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_bench import PB, incident_bodies, log_bodies  # noqa: E402
from storm_bench import Deployment  # noqa: E402

from vigil.model import AgentSpace, Role  # noqa: E402
from vigil.store.state import StateStore  # noqa: E402

FINISHED = ("concluded", "inconclusive", "failed", "cancelled")


class Bench:
    """One deployment with ``n`` spaces holding a small app's telemetry, and an alert sender."""

    def __init__(self, mode: str, workers: int, n_spaces: int, budget_s: float = 120.0, home: Path | None = None,
                 sources: dict | None = None, preload: bool = True) -> None:
        self.home = home or Path(tempfile.mkdtemp(prefix="vigil-fault-"))
        self.dep = Deployment(mode, workers, "amqp", self.home)
        st = StateStore(self.dep.database_url)
        self.spaces = [f"f{i:02d}" for i in range(n_spaces)]
        self.tokens = {}
        for sp in self.spaces:
            space = AgentSpace(id=sp, name=sp)
            space.policies.investigation_budget_s = budget_s
            st.put_space(space)
            self.tokens[sp] = st.create_token(sp, Role.OPERATOR, name="bench")[0]
            for name, (kind, config) in (sources or {}).items():
                st.put_source(sp, name, kind, config)
        st.close()
        self.dep.start()
        self.accepted: dict[str, set[str]] = {sp: set() for sp in self.spaces}
        self.attempts = Counter()
        self.lock = threading.Lock()
        self.fault = time.time() - 30
        if preload:
            bodies, self.fault = incident_bodies(seed=1, minutes=3, rps=4)
            with httpx.Client(base_url=self.dep.url, timeout=120) as c:
                for sp in self.spaces:
                    for sig, items in bodies.items():
                        for b in items:
                            r = c.post(f"/v1/{sig}", content=b, headers={"Content-Type": PB,
                                                                         "Authorization": f"Bearer {self.tokens[sp]}"})
                            assert r.status_code == 200, r.text[:200]

    def client(self, sp: str) -> httpx.Client:
        return httpx.Client(base_url=self.dep.url, timeout=60, headers={"Authorization": f"Bearer {self.tokens[sp]}"})

    def send(self, sp: str, fp: str, name: str = "CheckoutErrors", retry_s: float = 120.0) -> bool:
        """One alert, retried (5xx, connection errors) for up to ``retry_s``; True when accepted."""
        starts = datetime.fromtimestamp(self.fault + 5, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"version": "4", "status": "firing", "alerts": [{
            "status": "firing", "labels": {"alertname": name, "service": "frontend"},
            "annotations": {"summary": f"{name} ({fp})"}, "startsAt": starts, "fingerprint": fp}]}
        deadline = time.monotonic() + retry_s
        with self.client(sp) as c:
            while time.monotonic() < deadline:
                with self.lock:
                    self.attempts[sp] += 1
                try:
                    r = c.post(f"/v1/spaces/{sp}/webhooks/alertmanager", json=body)
                except httpx.HTTPError:
                    time.sleep(1)
                    continue
                if r.status_code == 202:
                    with self.lock:
                        self.accepted[sp].add(f"alertmanager:{fp}")
                    return True
                if r.status_code < 500:
                    return False
                time.sleep(float(r.headers.get("retry-after", "1")))
        return False

    def stream(self, seconds: float, every_s: float, name=lambda i: "CheckoutErrors") -> threading.Thread:
        """Alerts to every space in turn, one every ``every_s``, for ``seconds`` (a sender thread each)."""
        def run() -> None:
            senders, i, t_end = [], 0, time.monotonic() + seconds
            while time.monotonic() < t_end:
                sp = self.spaces[i % len(self.spaces)]
                t = threading.Thread(target=self.send, args=(sp, f"{sp}-a{i}", name(i)))
                t.start()
                senders.append(t)
                i += 1
                time.sleep(every_s)
            for t in senders:
                t.join()
        th = threading.Thread(target=run)
        th.start()
        return th

    def settle(self, timeout: float) -> dict:
        """Wait until every investigation has finished (or ``timeout``); then count what is stored."""
        deadline = time.monotonic() + timeout
        while True:
            statuses, invs, errors = Counter(), [], []
            try:
                for sp in self.spaces:
                    with self.client(sp) as c:
                        got = c.get(f"/v1/spaces/{sp}/investigations", params={"limit": 200}).json()
                    invs += [(sp, i["id"]) for i in got]
                    statuses.update(i["status"] for i in got)
                    errors += [i.get("error", "")[:120] for i in got if i["status"] == "failed"]
            except (httpx.HTTPError, ValueError):
                statuses = Counter({"?": 1})
            if all(s in FINISHED for s in statuses) or time.monotonic() > deadline:
                break
            time.sleep(2)
        stored, twice, steps = {}, 0, 0
        for sp in self.spaces:
            with self.client(sp) as c:
                fps = set()
                for inc in c.get(f"/v1/spaces/{sp}/incidents", params={"limit": 200}).json():
                    fps |= {a["fingerprint"] for a in c.get(f"/v1/spaces/{sp}/incidents/{inc['id']}").json()["alerts"]}
                stored[sp] = fps
        st = StateStore(self.dep.database_url)
        try:
            from sqlalchemy import func, select

            from vigil.store.tables import JournalRow
            with st.session() as s:
                rows = s.execute(select(JournalRow.investigation_id, JournalRow.step, func.count())
                                 .where(JournalRow.step.is_not(None))
                                 .group_by(JournalRow.investigation_id, JournalRow.step)).all()
            steps = len(rows)
            twice = sum(1 for *_k, n in rows if n > 1)
        finally:
            st.close()
        accepted = sum(len(v) for v in self.accepted.values())
        lost = sum(len(self.accepted[sp] - stored[sp]) for sp in self.spaces)
        extra = sum(len(stored[sp] - self.accepted[sp]) for sp in self.spaces)
        return {"alerts_accepted": accepted, "alerts_stored": sum(len(v) for v in stored.values()),
                "accepted_not_stored": lost, "stored_not_accepted": extra, "deliveries": sum(self.attempts.values()),
                "investigations": len(invs), "statuses": dict(statuses),
                "concluded": statuses.get("concluded", 0) + statuses.get("inconclusive", 0),
                "journal_steps_written_twice": twice, "journal_steps_checked": steps, "failed_because": errors[:3]}

    def alive(self) -> bool:
        try:
            return httpx.get(self.dep.url + "/healthz", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.dep.close()
        shutil.rmtree(self.home, ignore_errors=True)


def _job_owners(bench: Bench) -> dict[str, str]:
    st = StateStore(bench.dep.database_url)
    try:
        from sqlalchemy import select

        from vigil.store.tables import JobRow
        with st.session() as s:
            return {r.investigation_id: r.owner for r in s.scalars(select(JobRow).where(JobRow.status == "running"))
                    if r.owner}
    finally:
        st.close()


# -- scenarios ------------------------------------------------------------------------------------
def worker_kill(args) -> dict:
    b = Bench("scaleout", 2, 6)
    try:
        for sp in b.spaces:
            assert b.send(sp, f"{sp}-k")
        victim, during, deadline = None, None, time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            for inv, owner in _job_owners(b).items():
                pid = int(owner.split(":")[1]) if owner.count(":") >= 2 else None
                if pid in {w.pid for w in b.dep.worker_procs}:
                    victim, during = pid, inv
                    break
            time.sleep(0.1)
        assert victim, "no investigation was seen running on a worker"
        time.sleep(0.5)                                 # well inside its run
        os.kill(victim, signal.SIGKILL)
        b.dep.worker_procs.append(b.dep._spawn("worker", "--concurrency", "1", name="worker-new"))
        r = b.settle(args.timeout)
        r["killed_worker_pid"], r["killed_during"] = victim, during
        r["server_alive"] = b.alive()
        return r
    finally:
        b.close()


def _restart_under_load(args, restart) -> dict:
    b = Bench("scaleout", 2, 6)
    try:
        load = b.stream(args.load_s, 0.5, name=lambda i: f"Alert{i % 3}")
        time.sleep(args.load_s / 3)
        t0 = time.monotonic()
        restart()
        outage = time.monotonic() - t0
        load.join()
        r = b.settle(args.timeout)
        r["restart_s"] = round(outage, 1)
        r["tasks_retried_while_db_away"] = sum(p.read_text(errors="replace").count("cannot take job")
                                               for p in b.home.glob("worker*.log"))
        r["server_alive"] = b.alive()
        return r
    finally:
        b.close()


def pg_restart(args) -> dict:
    return _restart_under_load(args, lambda: subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True,
                                                            capture_output=True, timeout=120))


def broker_restart(args) -> dict:
    def restart() -> None:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
        time.sleep(args.outage)
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    return _restart_under_load(args, restart)


class _Hang(threading.Thread):
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


class _Garbage(threading.Thread):
    """Answers every request with 200 and random bytes (claiming JSON)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = random.randbytes(4096)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]

    def run(self) -> None:
        self.httpd.serve_forever()


def bad_sources(args) -> dict:
    hang, garbage = _Hang(), _Garbage()
    hang.start()
    garbage.start()
    sources = {"prom": ("prometheus", {"url": f"http://127.0.0.1:{hang.port}", "timeout_s": 5}),
               "logs": ("loki", {"url": f"http://127.0.0.1:{garbage.port}", "timeout_s": 5})}
    b = Bench("embedded", 2, 4, budget_s=60.0, sources=sources)
    try:
        t0 = time.monotonic()
        for sp in b.spaces:
            assert b.send(sp, f"{sp}-s")
        r = b.settle(args.timeout)
        r["settled_s"] = round(time.monotonic() - t0, 1)
        notes = []
        with b.client(b.spaces[0]) as c:
            inv = c.get(f"/v1/spaces/{b.spaces[0]}/investigations").json()[0]["id"]
            for j in c.get(f"/v1/spaces/{b.spaces[0]}/investigations/{inv}/journal").json():
                if "partial evidence" in j["message"] or "prom" in j["message"] and "fail" in j["message"]:
                    notes.append(j["message"][:160])
        r["journal_says"] = notes[:3]
        r["server_alive"] = b.alive()
        return r
    finally:
        b.close()
        garbage.httpd.shutdown()
        hang.sock.close()


def full_disk(args) -> dict:
    mnt = Path(tempfile.mkdtemp(prefix="vigil-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    b = None
    try:
        home = mnt / "home"
        home.mkdir()
        b = Bench("embedded", 1, 2, home=home, preload=False)
        rng = random.Random(5)
        logs = log_bodies(4, 2000, rng)
        otlp = Counter()
        with b.client(b.spaces[0]) as c:
            for i in range(200):               # until the disk is full
                try:
                    r = c.post("/v1/logs", content=logs[i % 4], headers={"Content-Type": PB})
                    otlp[r.status_code] += 1
                except httpx.HTTPError as exc:
                    otlp[type(exc).__name__] += 1
                if shutil.disk_usage(mnt).free < 64 << 10 and otlp[200] and sum(otlp.values()) > 5:
                    break
        full_alerts = Counter()
        for i in range(40):
            sp = b.spaces[i % 2]
            with b.client(sp) as c:
                body = {"version": "4", "status": "firing", "alerts": [{
                    "status": "firing", "labels": {"alertname": f"Full{i}", "service": "frontend"},
                    "startsAt": datetime.now(UTC).isoformat(), "fingerprint": f"{sp}-full{i}"}]}
                try:
                    r = c.post(f"/v1/spaces/{sp}/webhooks/alertmanager", json=body)
                    full_alerts[r.status_code] += 1
                    if r.status_code == 202:
                        b.accepted[sp].add(f"alertmanager:{sp}-full{i}")
                except httpx.HTTPError as exc:
                    full_alerts[type(exc).__name__] += 1
        alive_when_full = b.alive()
        free_when_full = shutil.disk_usage(mnt).free
        # free the space (as an operator would) and check what was accepted is there
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        for i in range(4):
            sp = b.spaces[i % 2]
            b.send(sp, f"{sp}-after{i}", retry_s=30)
        r = b.settle(args.timeout)
        r |= {"otlp_answers_while_filling": dict(otlp), "alert_answers_when_full": dict(full_alerts),
              "free_bytes_when_full": free_when_full, "server_alive_when_full": alive_when_full,
              "server_alive": b.alive()}
        return r
    finally:
        if b is not None:
            b.close()
        subprocess.run(["umount", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


SCENARIOS = {"worker-kill": worker_kill, "pg-restart": pg_restart, "broker-restart": broker_restart,
             "bad-sources": bad_sources, "full-disk": full_disk}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--load-s", type=float, default=30.0, help="how long alerts arrive around a restart")
    ap.add_argument("--outage", type=float, default=5.0, help="seconds the broker stays stopped")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = {}
    for name in args.only.split(","):
        print(f"{name}: running...", flush=True)
        t0 = time.monotonic()
        try:
            r = SCENARIOS[name](args)
        except Exception as exc:  # noqa: BLE001 - a scenario that could not run says why and the rest go on
            r = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        r["scenario_s"] = round(time.monotonic() - t0, 1)
        out[name] = r
        print(f"{name}: {json.dumps(r)}", flush=True)
    print()
    print("| scenario | alerts accepted | stored | accepted, not stored | investigations | concluded | "
          "journal steps twice | server answered | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in out.items():
        if "error" in r:
            print(f"| {name} | - | - | - | - | - | - | - | could not run: {r['error']} |")
            continue
        notes = []
        if "restart_s" in r:
            notes.append(f"restart took {r['restart_s']} s; {r['deliveries']} delivery attempts; "
                         f"{r['tasks_retried_while_db_away']} worker tasks retried while the database was away")
        if "settled_s" in r:
            notes.append(f"all finished {r['settled_s']} s after the alerts")
        if "alert_answers_when_full" in r:
            notes.append(f"when full: alerts {r['alert_answers_when_full']}, OTLP {r['otlp_answers_while_filling']}")
        if "killed_worker_pid" in r:
            notes.append(f"worker {r['killed_worker_pid']} killed while running {r['killed_during']}")
        if r.get("statuses"):
            notes.append(f"statuses {r['statuses']}")
        if r.get("failed_because"):
            notes.append(f"failed: {'; '.join(r['failed_because'])}")
        if r.get("stored_not_accepted"):
            notes.append(f"{r['stored_not_accepted']} stored but answered 503 (a retry is a duplicate)")
        print(f"| {name} | {r['alerts_accepted']} | {r['alerts_stored']} | {r['accepted_not_stored']} | "
              f"{r['investigations']} | {r['concluded']} | "
              f"{(str(r['journal_steps_written_twice']) + ' of ' + str(r['journal_steps_checked'])) if r['journal_steps_checked'] else '-'} | {'yes' if r['server_alive'] else 'NO'} | {'; '.join(notes)} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
