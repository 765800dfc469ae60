"""Benchmark of `vigil serve` on this machine (a script, not a test):

1. OTLP/HTTP ingest throughput, sustained: protobuf ExportTraceServiceRequest / ExportLogsServiceRequest
   bodies (5,000 spans or 10,000 log records each, distinct ids) sent over keep-alive connections by a
   separate load-generator process for a fixed time; the rate is what the server *stored* (counted in
   its telemetry store afterwards), not just what it acknowledged.
2. Alert-to-first-hypothesis latency: 20 spaces each hold 6 minutes of a small app's telemetry
   (frontend -> cart -> db, frontend -> catalog; traces, logs, metrics over OTLP) with a fault in cart
   in the last minute; 20 Alertmanager webhooks arrive at once (one per space); latency is from the
   delivery to the first ``hypotheses`` event on the investigation's live journal (SSE), which each
   client opens as soon as its webhook is acknowledged. The alerts started 55 s before they arrive
   (as with Alertmanager's default 30 s group_wait), so the 15 s settle wait does not apply.
3. Peak memory (VmHWM) of the server process.

Usage: .venv/bin/python benchmarks/server_bench.py [--seconds 15] [--alerts 20] [--json out/server_bench.json]
Targets (issue): >= 50,000 spans/s and >= 100,000 log records/s sustained; p50 <= 3 s and p95 <= 10 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PB = "application/x-protobuf"


# -- telemetry makers (opentelemetry-proto messages) ----------------------------------------------
def _resource(msg, service: str) -> None:
    kv = msg.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service


def span_bodies(n_bodies: int, per_body: int, rng: random.Random) -> list[bytes]:
    out = []
    now = time.time_ns()
    for b in range(n_bodies):
        req = ExportTraceServiceRequest()
        services = ["frontend", "cart", "catalog", "db", "payments"]
        per_service = per_body // len(services)
        for svc in services:
            rs = req.resource_spans.add()
            _resource(rs, svc)
            spans = rs.scope_spans.add().spans
            for i in range(per_service):
                sp = spans.add()
                sp.trace_id, sp.span_id, sp.parent_span_id = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
                sp.name = f"{svc} op{i % 7}"
                sp.kind = 2
                sp.start_time_unix_nano = now - (n_bodies - b) * 1_000_000_000 + i * 10_000
                sp.end_time_unix_nano = sp.start_time_unix_nano + rng.randint(200_000, 20_000_000)
                a = sp.attributes.add()
                a.key, a.value.string_value = "http.route", f"/{svc}/{i % 7}"
                if i % 50 == 0:
                    sp.status.code = 2
        out.append(req.SerializeToString())
    return out


def log_bodies(n_bodies: int, per_body: int, rng: random.Random) -> list[bytes]:
    out = []
    now = time.time_ns()
    for b in range(n_bodies):
        req = ExportLogsServiceRequest()
        for svc in ("frontend", "cart", "catalog", "db", "payments"):
            rl = req.resource_logs.add()
            _resource(rl, svc)
            recs = rl.scope_logs.add().log_records
            for i in range(per_body // 5):
                lr = recs.add()
                lr.time_unix_nano = now - (n_bodies - b) * 1_000_000_000 + i * 10_000
                lr.severity_number, lr.severity_text = 9, "INFO"
                lr.body.string_value = f"handled request {rng.randint(0, 10**6)} for user {i} in {i % 97} ms"
                lr.trace_id, lr.span_id = rng.randbytes(16), rng.randbytes(8)
        out.append(req.SerializeToString())
    return out


def incident_bodies(seed: int, minutes: float = 6.0, rps: float = 20.0, fault_s: float = 60.0):
    """A small app's recent telemetry: traces, logs, metrics; cart fails in the last ``fault_s`` seconds.
    Returns (bodies by signal, fault start in epoch seconds)."""
    rng = random.Random(seed)
    end = time.time()
    start = end - minutes * 60
    fault = end - fault_s
    n = int(minutes * 60 * rps)
    traces = {s: ExportTraceServiceRequest() for s in ("frontend", "cart", "catalog", "db")}
    logs = {s: ExportLogsServiceRequest() for s in traces}
    tspans, lrecs = {}, {}
    for s in traces:
        rs = traces[s].resource_spans.add()
        _resource(rs, s)
        tspans[s] = rs.scope_spans.add().spans
        rl = logs[s].resource_logs.add()
        _resource(rl, s)
        lrecs[s] = rl.scope_logs.add().log_records

    def span(svc, name, tid, parent, t0, dur_ms, err=False):
        sp = tspans[svc].add()
        sp.trace_id, sp.span_id, sp.name = tid, rng.randbytes(8), name
        if parent is not None:
            sp.parent_span_id = parent
        sp.start_time_unix_nano, sp.end_time_unix_nano = int(t0 * 1e9), int((t0 + dur_ms / 1e3) * 1e9)
        if err:
            sp.status.code = 2
        return sp.span_id

    def log(svc, t, level, body, tid, sid):
        lr = lrecs[svc].add()
        lr.time_unix_nano, lr.severity_text = int(t * 1e9), level
        lr.severity_number = 17 if level == "ERROR" else 9
        lr.body.string_value, lr.trace_id, lr.span_id = body, tid, sid

    for i in range(n):
        t = start + i / rps
        faulty = t >= fault
        failed = faulty and rng.random() < 0.4
        tid = rng.randbytes(16)
        cart_ms = rng.uniform(120, 160) if faulty else rng.uniform(2, 5)
        db_ms = rng.uniform(1, 2)
        cat_ms = rng.uniform(3, 6)
        fe = span("frontend", "GET /checkout", tid, None, t, cart_ms + cat_ms + 3, failed)
        c = span("cart", "POST /cart/items", tid, fe, t + 0.001, cart_ms, failed)
        d = span("db", "SELECT cart_items", tid, c, t + 0.002, db_ms)
        k = span("catalog", "GET /products", tid, fe, t + 0.001 + cart_ms / 1e3, cat_ms)
        log("db", t + 0.002, "INFO", f"query cart_items rows={rng.randint(1, 9)}", tid, d)
        log("catalog", t + 0.003, "INFO", f"served product {rng.randint(1, 500)}", tid, k)
        if failed:
            log("cart", t + cart_ms / 1e3, "ERROR", "cart store unavailable: connection pool exhausted", tid, c)
            log("frontend", t + 0.01, "WARN", "checkout failed: upstream returned 503", tid, fe)
        else:
            log("cart", t + cart_ms / 1e3, "INFO", f"added item to cart of user {rng.randint(1, 10**5)}", tid, c)
            log("frontend", t + 0.01, "INFO", f"checkout ok for user {rng.randint(1, 10**5)}", tid, fe)
    met = ExportMetricsServiceRequest()
    for s in traces:
        rm = met.resource_metrics.add()
        _resource(rm, s)
        sm = rm.scope_metrics.add()
        cpu = sm.metrics.add()
        cpu.name = "process.cpu.utilization"
        for j in range(int(minutes * 6)):
            p = cpu.gauge.data_points.add()
            t = start + j * 10
            p.time_unix_nano = int(t * 1e9)
            p.as_double = rng.uniform(0.2, 0.3) + (0.4 if s == "cart" and t >= fault else 0.0)
    bodies = {"traces": [m.SerializeToString() for m in traces.values()],
              "logs": [m.SerializeToString() for m in logs.values()], "metrics": [met.SerializeToString()]}
    return bodies, fault


# -- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vigil(home: Path, *args: str) -> str:
    env = {**os.environ, "VIGIL_HOME": str(home)}
    env.pop("VIGIL_DATABASE_URL", None)
    p = subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env, check=True)
    return p.stdout.strip()


class Server:
    def __init__(self, home: Path, workers: int) -> None:
        self.port = free_port()
        env = {**os.environ, "VIGIL_HOME": str(home)}
        env.pop("VIGIL_DATABASE_URL", None)
        self.log = open(home / "serve.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "vigil", "serve", "--port", str(self.port),
                                      "--workers", str(workers)], env=env, stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("vigil serve did not start")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def json(self, path: str, token: str):
        status, body = self.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        assert status == 200, (status, body[:200])
        return json.loads(body)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


# -- 1. ingest throughput ------------------------------------------------------------------------
def _load(port: int, path: str, token: str, bodies: list[bytes], seconds: float, conns: int, out) -> None:
    """Load generator (its own process): ``conns`` keep-alive connections sending round-robin."""
    stop_at = time.monotonic() + seconds
    lat: list[float] = []
    sent = [0] * conns
    failed = [0] * conns

    def run(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < stop_at:
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            c.request("POST", path, body=body, headers={"Content-Type": PB, "Authorization": f"Bearer {token}"})
            r = c.getresponse()
            r.read()
            lat.append(time.perf_counter() - t0)
            if r.status == 200:
                sent[k] += 1
            else:
                failed[k] += 1
            i += conns
        c.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"requests": sum(sent), "failed": sum(failed), "elapsed": time.monotonic() - t0,
             "p50_ms": 1000 * statistics.median(lat) if lat else None,
             "p99_ms": 1000 * sorted(lat)[int(0.99 * (len(lat) - 1))] if lat else None})


def ingest(server: Server, home: Path, signal: str, bodies: list[bytes], per_body: int, seconds: float,
           conns: int) -> dict:
    space = f"ingest-{signal}"
    vigil(home, "space", "create", space)
    token = vigil(home, "token", "create", "--space", space, "--role", "operator")
    q = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_load, args=(server.port, f"/v1/{signal}", token, bodies, seconds,
                                                               conns, q))
    proc.start()
    res = q.get()
    proc.join()
    admin = vigil(home, "token", "create", "--space", space, "--role", "viewer")
    counts = server.json(f"/v1/spaces/{space}/sources", admin)[0]["counts"]
    stored = counts["spans" if signal == "traces" else "logs"]
    return {"signal": signal, "items_per_request": per_body, "connections": conns, "seconds": round(res["elapsed"], 1),
            "requests": res["requests"], "failed": res["failed"], "stored": stored,
            "stored_per_s": round(stored / res["elapsed"]), "request_p50_ms": round(res["p50_ms"], 1),
            "request_p99_ms": round(res["p99_ms"], 1),
            "mb_per_s": round(res["requests"] * statistics.mean(len(b) for b in bodies) / res["elapsed"] / 1e6, 1)}


# -- 2. alert-to-first-hypothesis latency --------------------------------------------------------
def alert_latency(server: Server, home: Path, n: int) -> dict:
    bodies, fault = incident_bodies(seed=1)
    spaces = []
    for i in range(n):
        space = f"app{i:02d}"
        vigil(home, "space", "create", space)
        tok = vigil(home, "token", "create", "--space", space, "--role", "operator")
        for signal, items in bodies.items():
            for b in items:
                status, text = server.request("POST", f"/v1/{signal}", b, {"Content-Type": PB,
                                                                            "Authorization": f"Bearer {tok}"})
                assert status == 200, text[:200]
        spaces.append((space, tok))
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fault + 5))
    results: dict[str, dict] = {}
    barrier = threading.Barrier(n)

    def fire(space: str, tok: str) -> None:
        payload = json.dumps({"version": "4", "status": "firing", "alerts": [{
            "status": "firing", "labels": {"alertname": "CheckoutErrors", "service": "frontend"},
            "annotations": {"summary": "checkout errors"}, "startsAt": starts, "fingerprint": space}]}).encode()
        barrier.wait()
        t0 = time.perf_counter()
        status, body = server.request("POST", f"/v1/spaces/{space}/webhooks/alertmanager", payload,
                                      {"Content-Type": "application/json", "Authorization": f"Bearer {tok}"})
        acked = time.perf_counter() - t0
        inv = json.loads(body)["outcomes"][0]["investigation_id"]
        # watch it as an operator does: the live journal (SSE) until the first hypotheses event
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        c.request("GET", f"/v1/spaces/{space}/investigations/{inv}/events", headers={"Authorization": f"Bearer {tok}"})
        r = c.getresponse()
        event, top, first_s, final = None, "none", float("nan"), "none"
        while True:
            line = r.fp.readline().decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "hypotheses":
                hyps = json.loads(line[5:])
                if hyps and top == "none":
                    top, first_s = hyps[0]["resource"], time.perf_counter() - t0
                if hyps:
                    final = hyps[0]["resource"]
            elif line.startswith("data:") and event == "end" or not line and r.fp.closed:
                break
        results[space] = {"ack_s": acked, "latency_s": first_s, "top": top, "final_s": time.perf_counter() - t0,
                          "final_top": final}
        c.close()

    threads = [threading.Thread(target=fire, args=s) for s in spaces]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = sorted(r["latency_s"] for r in results.values())
    q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))]  # noqa: E731
    return {"alerts": n, "p50_s": round(statistics.median(lat), 2), "p95_s": round(q(0.95), 2),
            "max_s": round(lat[-1], 2), "ack_p50_ms": round(1000 * statistics.median(r["ack_s"] for r in
                                                                                     results.values()), 1),
            "top1_cart": sum(r["top"] == "cart" for r in results.values()),
            "final_p50_s": round(statistics.median(r["final_s"] for r in results.values()), 2),
            "final_max_s": round(max(r["final_s"] for r in results.values()), 2),
            "final_top1_cart": sum(r["final_top"] == "cart" for r in results.values()),
            "spans_per_space": sum(len(ExportTraceServiceRequest.FromString(b).resource_spans[0].scope_spans[0].spans)
                                   for b in bodies["traces"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of each sustained ingest run")
    ap.add_argument("--alerts", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    rng = random.Random(42)
    print(f"machine: {os.cpu_count()} cores; preparing bodies...", flush=True)
    spans = span_bodies(24, 5000, rng)
    logs = log_bodies(12, 10000, rng)
    server = Server(home, args.workers)
    report: dict = {"cores": os.cpu_count(), "workers": args.workers}
    try:
        for name, bodies, per in (("traces", spans, 5000), ("logs", logs, 10000)):
            r = ingest(server, home, name, bodies, per, args.seconds, args.connections)
            report[f"ingest_{name}"] = r
            print(f"OTLP {name}: {r['stored_per_s']:,} items/s stored over {r['seconds']} s "
                  f"({r['requests']} requests of {per:,}, {r['failed']} failed, {r['mb_per_s']} MB/s, "
                  f"request p50 {r['request_p50_ms']} ms, p99 {r['request_p99_ms']} ms)", flush=True)
        r = alert_latency(server, home, args.alerts)
        report["alert_to_first_hypothesis"] = r
        print(f"alert -> first hypothesis, {r['alerts']} alerts at once ({r['spans_per_space']:,} spans per space): "
              f"p50 {r['p50_s']} s, p95 {r['p95_s']} s, max {r['max_s']} s; webhook ack p50 {r['ack_p50_ms']} ms; "
              f"root cause cart first in {r['top1_cart']}/{r['alerts']} (first answer = the preliminary ranking)",
              flush=True)
        print(f"alert -> concluded (full analysis): p50 {r['final_p50_s']} s, max {r['final_max_s']} s; "
              f"root cause cart first in {r['final_top1_cart']}/{r['alerts']}", flush=True)
        report["server_peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        print(f"server peak memory (VmHWM): {report['server_peak_rss_mb']} MB", flush=True)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
