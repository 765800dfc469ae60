"""Alert storm benchmark (issue #13; a script, not a test): 1,000 alerts within a minute across 50 spaces.

Each space holds a few minutes of a small app's telemetry sent over OTLP (frontend -> cart -> db,
frontend -> catalog; cart fails in the last minute: ``server_bench.incident_bodies``). Then, for
``--seconds`` (60), every space receives its share of ``--alerts`` (1,000) as real deliveries, spread
evenly: Alertmanager webhooks (version 4, authenticated with an operator token in ``Authorization``, as
Alertmanager's ``http_config.authorization`` sends it) for most spaces, and generic webhooks signed with
HMAC-SHA256 (``X-Vigil-Timestamp``, ``X-Vigil-Signature``) for every fifth space. Each space groups its
alerts by ``alertname`` (two alert names, so two incidents per space) and some alerts are delivered
twice. A delivery answered 503 is retried after its ``Retry-After``, as Alertmanager retries a 5xx.
At the same time a load generator sends OTLP traces and logs to a space of its own.

It prints, per run: deliveries and alerts accepted; incidents and alerts stored (checked against what
was sent); investigations started and how each ended (all must conclude); alert -> first hypothesis
(from the delivery that opened the incident to the first ``hypotheses`` event on the investigation's
live journal, Server-Sent Events) p50/p95/max; alert -> concluded; OTLP items stored per second while
the storm ran; and the API latency of a space that receives no alert (its investigations list).

Modes:
  embedded  ``vigil serve --workers N`` on SQLite + the embedded DuckDB (the zero-config default)
  scaleout  one ``vigil serve`` and N ``vigil worker`` processes on PostgreSQL (a fresh schema of
            VIGIL_BENCH_PG_URL, default the test database) and RabbitMQ (``--broker redis`` for Redis)

Usage: .venv/bin/python benchmarks/storm_bench.py --mode embedded --workers 2
       .venv/bin/python benchmarks/storm_bench.py --mode scaleout --workers 1 [--json out/storm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_bench import PB, incident_bodies, log_bodies, span_bodies  # noqa: E402

from vigil.integrations.generic import sign  # noqa: E402
from vigil.model import AgentSpace, AlertGrouping, Role  # noqa: E402
from vigil.store.state import StateStore  # noqa: E402

PG_URL = os.environ.get("VIGIL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BROKERS = {"amqp": "amqp://guest:guest@127.0.0.1:5672//", "redis": "redis://127.0.0.1:6379/5"}
FINISHED = ("concluded", "inconclusive", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def q(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else float("nan")


# -- the deployment -------------------------------------------------------------------------------
class Deployment:
    def __init__(self, mode: str, workers: int, broker: str, home: Path) -> None:
        self.mode, self.workers, self.home = mode, workers, home
        self.env = {**os.environ, "VIGIL_HOME": str(home)}
        for k in ("VIGIL_DATABASE_URL", "VIGIL_BROKER_URL", "VIGIL_TELEMETRY_URL", "VIGIL_SECRET_KEY_FILE"):
            self.env.pop(k, None)
        self.schema = None
        if mode == "scaleout":
            from cryptography.fernet import Fernet
            from sqlalchemy import create_engine, text
            self.schema = f"vigil_storm_{uuid.uuid4().hex[:8]}"
            eng = create_engine(PG_URL)
            with eng.begin() as c:
                c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            eng.dispose()
            self.env |= {"VIGIL_DATABASE_URL": f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D"
                                               f"{self.schema}",
                         "VIGIL_BROKER_URL": BROKERS[broker], "VIGIL_BROKER_QUEUE": f"vigil.storm.{uuid.uuid4().hex[:8]}",
                         "VIGIL_SECRET_KEY": Fernet.generate_key().decode()}
        self.database_url = self.env.get("VIGIL_DATABASE_URL") or f"sqlite:///{home / 'state.db'}"
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([sys.executable, "-m", "vigil", *args], env=self.env, stdout=log, stderr=log,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def start(self) -> None:
        self.serve = self._spawn("serve", "--port", str(self.port), "--workers", str(self.workers), name="serve")
        if self.mode == "scaleout":
            self.worker_procs = [self._spawn("worker", "--concurrency", "1", name=f"worker{i}")
                                 for i in range(self.workers)]
        deadline = time.monotonic() + 300                  # a busy machine starts slowly
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise RuntimeError((self.home / "serve.log").read_text()[-2000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("vigil serve did not become ready")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.schema:
            from sqlalchemy import create_engine, text
            eng = create_engine(PG_URL)
            with eng.begin() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            eng.dispose()
            try:
                from kombu import Connection
                with Connection(self.env["VIGIL_BROKER_URL"], connect_timeout=3) as conn:
                    conn.default_channel.queue_delete(self.env["VIGIL_BROKER_QUEUE"])
            except Exception:  # noqa: BLE001 - a queue left behind is harmless
                pass


# -- the storm ------------------------------------------------------------------------------------
def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Watch(threading.Thread):
    """An operator's view of one investigation: its live journal until it ends (``--watch sse``). With
    ``--watch journal`` nothing is watched while the storm runs; afterwards ``from_journal`` reads the
    times from the journal (the preliminary ranking's entry, the finish), against the delivery's send time."""

    def __init__(self, url: str, space: str, token: str, inv: str, t0: float, wall0: float) -> None:
        super().__init__(daemon=True)
        self.url, self.space, self.token, self.inv, self.t0, self.wall0 = url, space, token, inv, t0, wall0
        self.first_s = self.end_s = float("nan")
        self.top = "none"
        self.status = "?"

    def from_journal(self) -> None:
        h = {"Authorization": f"Bearer {self.token}"}
        base = f"{self.url}/v1/spaces/{self.space}/investigations/{self.inv}"
        inv = httpx.get(base, headers=h, timeout=60).json()
        self.status = inv["status"]
        if inv.get("finished_at"):
            self.end_s = _ts(inv["finished_at"]) - self.wall0
        journal = httpx.get(base + "/journal", headers=h, timeout=60).json()
        firsts = [_ts(j["ts"]) for j in journal if j["kind"] == "analysis" and j["data"].get("preliminary")] or \
                 [_ts(j["ts"]) for j in journal if j["kind"] == "conclusion"]
        if firsts:
            self.first_s = min(firsts) - self.wall0
        hyps = httpx.get(base + "/hypotheses", headers=h, timeout=60).json()
        self.top = hyps[0]["resource"] if hyps else "none"

    def run(self) -> None:
        path = f"/v1/spaces/{self.space}/investigations/{self.inv}/events"
        for _attempt in range(20):         # a stream cut (a busy server) is resumed
            try:
                with httpx.stream("GET", self.url + path, headers={"Authorization": f"Bearer {self.token}"},
                                  timeout=httpx.Timeout(30, read=600)) as r:
                    event = None
                    for line in r.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "hypotheses":
                            hyps = json.loads(line[5:])
                            if hyps and self.first_s != self.first_s:
                                self.first_s, self.top = time.perf_counter() - self.t0, hyps[0]["resource"]
                        elif line.startswith("data:") and event == "end":
                            self.end_s = time.perf_counter() - self.t0
                            break
                break
            except httpx.HTTPError:
                time.sleep(1)
        try:
            self.status = httpx.get(self.url + path.removesuffix("/events"), timeout=30,
                                    headers={"Authorization": f"Bearer {self.token}"}).json()["status"]
        except (httpx.HTTPError, ValueError, KeyError):
            pass


def ingest_load(url: str, token: str, stop: threading.Event, out: dict) -> None:
    """OTLP traces and logs sent to one space for as long as the storm lasts (two connections)."""
    rng = random.Random(7)
    bodies = {"traces": span_bodies(6, 2000, rng), "logs": log_bodies(6, 4000, rng)}
    out.update(requests=0, failed=0)

    def run(signal_: str) -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": PB}) as c:
            i = 0
            while not stop.is_set():
                r = c.post(f"/v1/{signal_}", content=bodies[signal_][i % 6])
                out["requests"] += 1
                out["failed"] += r.status_code != 200
                i += 1

    threads = [threading.Thread(target=run, args=(s,)) for s in bodies]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["seconds"] = time.monotonic() - t0


def run(args) -> dict:
    home = Path(tempfile.mkdtemp(prefix="vigil-storm-"))
    dep = Deployment(args.mode, args.workers, args.broker, home)
    report: dict = {"mode": args.mode, "workers": args.workers, "watch": args.watch, "spaces": args.spaces, "alerts": args.alerts,
                    "seconds": args.seconds, "cores": os.cpu_count()}
    try:
        # spaces and tokens straight into the state database (before the server starts)
        st = StateStore(dep.database_url)
        spaces = [f"s{i:02d}" for i in range(args.spaces)]
        tokens, admins = {}, {}
        for sp in [*spaces, "quiet", "otlp"]:
            st.put_space(AgentSpace(id=sp, name=sp, alerting=AlertGrouping(group_by=["alertname"])))
            tokens[sp] = st.create_token(sp, Role.OPERATOR, name="bench")[0]
            admins[sp] = st.create_token(sp, Role.ADMIN, name="bench-admin")[0]
        st.close()
        dep.start()
        secrets = {sp: f"bench-secret-{sp}-0123456789abcdef" for sp in spaces[::5]}
        with httpx.Client(base_url=dep.url, timeout=60) as c:
            for sp, secret in secrets.items():
                r = c.put(f"/v1/spaces/{sp}/integrations/generic", json={"secret": secret},
                          headers={"Authorization": f"Bearer {admins[sp]}"})
                assert r.status_code in (200, 201), r.text[:200]
        print(f"{args.mode}, {args.workers} worker(s), {os.cpu_count()} cores: sending each space's telemetry...",
              flush=True)
        bodies, fault = incident_bodies(seed=1, minutes=args.telemetry_minutes, rps=args.rps)
        t0 = time.perf_counter()
        with httpx.Client(base_url=dep.url, timeout=120) as c:
            for sp in spaces:
                for signal_, items in bodies.items():
                    for b in items:
                        r = c.post(f"/v1/{signal_}", content=b, headers={"Content-Type": PB,
                                                                         "Authorization": f"Bearer {tokens[sp]}"})
                        assert r.status_code == 200, r.text[:200]
        report["telemetry_preload_s"] = round(time.perf_counter() - t0, 1)

        # the plan: each space's alerts, two names (two incidents), every 7th delivered twice
        starts = datetime.fromtimestamp(fault + 5, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        per_space = args.alerts // args.spaces
        plan = []               # (offset s, space, alerts)
        rng = random.Random(3)
        for sp in spaces:
            alerts = []
            for j in range(per_space):
                name = "CheckoutErrors" if j % 2 == 0 else "CartLatency"
                svc = "frontend" if j % 2 == 0 else "cart"
                alerts.append({"fp": f"{sp}-{j}", "name": name, "svc": svc, "pod": f"{svc}-{j}"})
            # deliveries of 1-4 alerts, spread over the minute; a few delivered again
            i = 0
            while i < len(alerts):
                n = rng.randint(1, 4)
                plan.append((rng.uniform(0, args.seconds), sp, alerts[i:i + n]))
                i += n
            for a in alerts[::7]:
                plan.append((rng.uniform(0, args.seconds), sp, [a]))
        plan.sort(key=lambda p: p[0])
        sent_fps = {sp: set() for sp in spaces}
        duplicates = {sp: 0 for sp in spaces}
        for _, sp, alerts in plan:
            for a in alerts:
                if a["fp"] in sent_fps[sp]:
                    duplicates[sp] += 1
                sent_fps[sp].add(a["fp"])

        watches: dict[str, Watch] = {}
        lock = threading.Lock()
        stats = {"deliveries": 0, "accepted": 0, "retried_503": 0, "failed": 0, "ack_s": []}

        def deliver(offset: float, sp: str, alerts: list[dict], base: float) -> None:
            time.sleep(max(0.0, base + offset - time.perf_counter()))
            if sp in secrets:
                body = json.dumps({"alerts": [{"title": f"{a['name']} on {a['svc']}", "at": starts,
                                               "fingerprint": a["fp"], "resource": a["svc"],
                                               "labels": {"alertname": a["name"], "service": a["svc"],
                                                          "pod": a["pod"]}} for a in alerts]}).encode()
                path = f"/v1/spaces/{sp}/webhooks/generic"
            else:
                body = json.dumps({"version": "4", "status": "firing", "receiver": "vigil",
                                   "groupKey": f'{{}}:{{alertname="{alerts[0]["name"]}"}}',
                                   "alerts": [{"status": "firing", "labels": {"alertname": a["name"],
                                                                              "service": a["svc"], "pod": a["pod"]},
                                               "annotations": {"summary": f"{a['name']} on {a['svc']}"},
                                               "startsAt": starts, "fingerprint": a["fp"]} for a in alerts]}).encode()
                path = f"/v1/spaces/{sp}/webhooks/alertmanager"
            with httpx.Client(base_url=dep.url, timeout=120) as c:
                for _attempt in range(10):
                    headers = {"Content-Type": "application/json"}
                    headers |= sign(secrets[sp], body) if sp in secrets else {"Authorization": f"Bearer {tokens[sp]}"}
                    t, wall = time.perf_counter(), time.time()
                    try:
                        r = c.post(path, content=body, headers=headers)
                    except httpx.HTTPError:
                        time.sleep(1)
                        continue
                    if r.status_code == 503:
                        with lock:
                            stats["retried_503"] += 1
                        time.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    break
                else:
                    r = None
            with lock:
                stats["deliveries"] += 1
                if r is None or r.status_code != 202:
                    stats["failed"] += 1
                    return
                stats["accepted"] += r.json()["accepted"]
                stats["ack_s"].append(time.perf_counter() - t)
                for o in r.json()["outcomes"]:
                    if o["outcome"] == "new-incident" and o["investigation_id"] not in watches:
                        w = Watch(dep.url, sp, tokens[sp], o["investigation_id"], t, wall)
                        watches[o["investigation_id"]] = w
                        if args.watch == "sse":
                            w.start()

        # a space with no alert: its API while the storm runs
        quiet_lat: list[float] = []
        stop = threading.Event()

        def quiet() -> None:
            with httpx.Client(base_url=dep.url, timeout=120, headers={"Authorization": f"Bearer {tokens['quiet']}"}) \
                    as c:
                while not stop.is_set():
                    t = time.perf_counter()
                    c.get("/v1/spaces/quiet/investigations")
                    quiet_lat.append(time.perf_counter() - t)
                    time.sleep(0.25)

        ingest_out: dict = {}
        side = [threading.Thread(target=quiet), threading.Thread(target=ingest_load,
                                                                 args=(dep.url, tokens["otlp"], stop, ingest_out))]
        for t in side:
            t.start()
        print(f"storm: {sum(len(p[2]) for p in plan)} alerts in {len(plan)} deliveries to {len(spaces)} spaces "
              f"over {args.seconds:g} s, OTLP ingest alongside...", flush=True)
        base = time.perf_counter() + 0.5
        senders = [threading.Thread(target=deliver, args=(*p, base)) for p in plan]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        storm_s = time.perf_counter() - base
        stop.set()
        for t in side:
            t.join()
        # every investigation must conclude
        deadline = time.monotonic() + args.timeout
        if args.watch == "sse":
            for w in list(watches.values()):
                w.join(max(1.0, deadline - time.monotonic()))
        else:
            while time.monotonic() < deadline:
                busy = 0
                with httpx.Client(base_url=dep.url, timeout=120) as c:
                    for sp in spaces:
                        busy += sum(i["status"] not in FINISHED for i in c.get(
                            f"/v1/spaces/{sp}/investigations", params={"limit": 200},
                            headers={"Authorization": f"Bearer {tokens[sp]}"}).json())
                if not busy:
                    break
                time.sleep(3)
            for w in watches.values():
                w.from_journal()
        with httpx.Client(base_url=dep.url, timeout=120) as c:
            otlp_counts = c.get("/v1/spaces/otlp/sources", headers={"Authorization": f"Bearer {tokens['otlp']}"}
                                ).json()[0]["counts"]
            stored_alerts = stored_dups = incidents = 0
            statuses: dict[str, int] = {}
            for sp in spaces:
                h = {"Authorization": f"Bearer {tokens[sp]}"}
                incs = c.get(f"/v1/spaces/{sp}/incidents", params={"limit": 200}, headers=h).json()
                incidents += len(incs)
                stored_alerts += sum(i["alert_count"] for i in incs)
                stored_dups += sum(i["duplicates"] for i in incs)
                for inv in c.get(f"/v1/spaces/{sp}/investigations", params={"limit": 200}, headers=h).json():
                    statuses[inv["status"]] = statuses.get(inv["status"], 0) + 1
        firsts = [w.first_s for w in watches.values() if w.first_s == w.first_s]
        ends = [w.end_s for w in watches.values() if w.end_s == w.end_s]
        sent_alerts = sum(len(s) for s in sent_fps.values())
        report |= {
            "deliveries": stats["deliveries"], "deliveries_failed": stats["failed"], "retried_503": stats["retried_503"],
            "alerts_sent": sum(len(p[2]) for p in plan), "alerts_accepted": stats["accepted"],
            "distinct_alerts_sent": sent_alerts, "duplicates_sent": sum(duplicates.values()),
            "alerts_stored": stored_alerts, "duplicates_counted": stored_dups,
            "incidents": incidents, "incidents_expected": 2 * len(spaces), "investigations": statuses,
            "storm_s": round(storm_s, 1), "ack_p50_ms": round(1000 * statistics.median(stats["ack_s"]), 1),
            "ack_p95_ms": round(1000 * q(stats["ack_s"], 0.95), 1),
            "first_hypothesis_p50_s": round(statistics.median(firsts), 2) if firsts else None,
            "first_hypothesis_p95_s": round(q(firsts, 0.95), 2) if firsts else None,
            "first_hypothesis_max_s": round(max(firsts), 2) if firsts else None,
            "with_first_hypothesis": len(firsts), "watched": len(watches),
            "concluded_p50_s": round(statistics.median(ends), 2) if ends else None,
            "concluded_max_s": round(max(ends), 2) if ends else None,
            "top1_cart": sum(w.top == "cart" for w in watches.values()),
            "otlp_items_stored": otlp_counts.get("spans", 0) + otlp_counts.get("logs", 0),
            "otlp_items_per_s": round((otlp_counts.get("spans", 0) + otlp_counts.get("logs", 0))
                                      / max(ingest_out.get("seconds", 1), 1e-9)),
            "otlp_requests_failed": ingest_out.get("failed"),
            "quiet_api_p50_ms": round(1000 * statistics.median(quiet_lat), 1) if quiet_lat else None,
            "quiet_api_max_ms": round(1000 * max(quiet_lat), 1) if quiet_lat else None,
        }
        try:
            report["load_average"] = round(os.getloadavg()[0], 1)
        except OSError:
            pass
    finally:
        dep.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home}")
    return report


def show(r: dict) -> None:
    ok = (r["alerts_accepted"] == r["alerts_sent"] and r["alerts_stored"] == r["distinct_alerts_sent"]
          and r["duplicates_counted"] == r["duplicates_sent"] and r["incidents"] == r["incidents_expected"]
          and sum(r["investigations"].get(s, 0) for s in ("concluded", "inconclusive")) == r["incidents"])
    print(f"{r['mode']}, {r['workers']} worker(s), {r['cores']} cores, load average {r.get('load_average')}:")
    print(f"  deliveries {r['deliveries']} ({r['deliveries_failed']} failed, {r['retried_503']} retried after 503) "
          f"over {r['storm_s']} s; alerts sent {r['alerts_sent']}, accepted {r['alerts_accepted']}; "
          f"ack p50 {r['ack_p50_ms']} ms, p95 {r['ack_p95_ms']} ms")
    print(f"  stored: {r['alerts_stored']} alerts (of {r['distinct_alerts_sent']} distinct), {r['duplicates_counted']} "
          f"duplicates (of {r['duplicates_sent']}), {r['incidents']} incidents (expected {r['incidents_expected']})")
    print(f"  investigations: {r['investigations']}; alert -> first hypothesis p50 {r['first_hypothesis_p50_s']} s, "
          f"p95 {r['first_hypothesis_p95_s']} s, max {r['first_hypothesis_max_s']} s ({r['with_first_hypothesis']}/"
          f"{r['watched']}); -> concluded p50 {r['concluded_p50_s']} s, max {r['concluded_max_s']} s; "
          f"cart first in {r['top1_cart']}/{r['watched']}")
    print(f"  OTLP alongside: {r['otlp_items_per_s']:,} items/s stored ({r['otlp_requests_failed']} requests failed); "
          f"a quiet space's API p50 {r['quiet_api_p50_ms']} ms, max {r['quiet_api_max_ms']} ms")
    print(f"  nothing lost, every investigation concluded: {'yes' if ok else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("embedded", "scaleout"), default="embedded")
    ap.add_argument("--workers", type=int, default=2, help="embedded: the server's workers; scaleout: vigil workers")
    ap.add_argument("--broker", choices=tuple(BROKERS), default="amqp")
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--spaces", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--telemetry-minutes", type=float, default=4.0)
    ap.add_argument("--rps", type=float, default=4.0, help="requests per second of each space's app")
    ap.add_argument("--timeout", type=float, default=1200.0, help="how long to wait for every investigation")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--watch", choices=("journal", "sse"), default="journal",
                    help="first hypothesis from the journal's times afterwards, or live over SSE (one stream "
                         "per investigation, opened when its delivery is answered)")
    ap.add_argument("--keep", action="store_true", help="keep the server's home (logs) afterwards")
    args = ap.parse_args()
    r = run(args)
    show(r)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
