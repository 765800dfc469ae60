"""Benchmark of the console's topology page with thousands of services (a script, not a test).

Sends one OTLP/JSON trace export over the API, as any client could, that names N services (default
1,000, 5,000 and 20,000): each service has one span whose parent is the span of service i // 2, and the
N - 1 call edges an investigation learns from them are stored (a binary tree, a dozen layers deep). A 5,000-service export
is about 640 KB, what the probe sent. Then it signs in to the console and requests the topology page;
server time is measured inside the process around the ASGI app (request in, last body byte out). It also
prints the page's size and how many services the graph draws.

Usage: .venv/bin/python benchmarks/topology_bench.py [--n 1000 5000 20000] [--repeat 5] [--json FILE]
Target (issue #13): the topology page with 5,000 services answers within 1 s of server time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from vigil.api import create_app
from vigil.app import App
from vigil.config import Settings
from vigil.model import AgentSpace, Edge, EdgeKind, EdgeSource, Role
from vigil.server.runtime import Runtime
from vigil.server.settings import ServerSettings


class Timed:
    """ASGI wrapper: the server time of each request, from its start to the last byte of the body."""

    def __init__(self, app) -> None:
        self.app, self.times = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def _send(msg):
            await send(msg)
            if msg["type"] == "http.response.body" and not msg.get("more_body"):
                self.times.append(time.perf_counter() - t0)

        await self.app(scope, receive, _send)


def otlp_export(n: int, t0_ns: int) -> dict:
    """One ExportTraceServiceRequest (OTLP/JSON) with ``n`` services in one trace: svc-i calls svc-(2i+1), svc-(2i+2)."""
    trace = "5b8efff798038103d269b633813fc60c"
    rs = []
    for i in range(n):
        span = {"traceId": trace, "spanId": f"{i + 1:016x}", "name": "GET /", "kind": 2,
                "startTimeUnixNano": str(t0_ns + i * 1000), "endTimeUnixNano": str(t0_ns + i * 1000 + 500_000)}
        if i:
            span["parentSpanId"] = f"{(i - 1) // 2 + 1:016x}"
        rs.append({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": f"svc-{i:05d}"}}]},
                   "scopeSpans": [{"spans": [span]}]})
    return {"resourceSpans": rs}


def run(n: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = Settings(home=home, database_url=f"sqlite:///{home / 'state.db'}",
                            telemetry_path=home / "telemetry.duckdb", reports_dir=home / "reports").ensure()
        rt = Runtime(App(settings), ServerSettings(max_otlp_bytes=64 << 20))
        rt.state.put_space(AgentSpace(id="topo", name="topo"))
        secret = rt.state.create_token("topo", Role.OPERATOR, name="bench")[0]
        timed = Timed(create_app(rt, start=False))
        with TestClient(timed) as c:
            body = json.dumps(otlp_export(n, time.time_ns() - 60_000_000_000)).encode()
            r = c.post("/v1/traces", content=body, headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {secret}"})
            assert r.status_code == 200, r.text[:300]
            # the call edges an investigation learns from these spans (the store keeps them for the space)
            rt.app.sources.learn_edges("topo", [Edge(src=f"svc-{(i - 1) // 2:05d}", dst=f"svc-{i:05d}",
                                                     kind=EdgeKind.CALLS, source=EdgeSource.TRACES)
                                                for i in range(1, n)])
            page = c.get("/ui/login")
            nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
            assert c.post("/ui/login", data={"login_csrf": nonce, "token": secret},
                          follow_redirects=False).status_code == 303
            timed.times.clear()
            sizes, drawn = [], 0
            for _ in range(repeat):
                r = c.get("/ui/s/topo/topology")
                assert r.status_code == 200, r.text[:300]
                sizes.append(len(r.content))
                drawn = len(re.findall(r'<g class="node ', r.text))
            times = list(timed.times)
        rt.app.close()
    out = {"services": n, "otlp_request_bytes": len(body), "median_s": statistics.median(times),
           "max_s": max(times), "first_s": times[0], "page_bytes": sizes[-1], "services_drawn": drawn}
    print(f"{n:>6} services  OTLP request {len(body) / 1024:7.0f} KB  page: median {out['median_s']:.3f} s, "
          f"first {out['first_s']:.3f} s, max {out['max_s']:.3f} s  ({repeat} requests)  "
          f"{out['page_bytes'] / 1024:.0f} KB, {drawn} services drawn", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    results = [run(n, a.repeat) for n in a.n]
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
