"""Loopback stand-ins for hosted or unrunnable telemetry backends (Loki, Tempo, Jaeger, OpenSearch,
Datadog), and a small slice of a real recorded incident to feed them.

None of these backends can run on this machine (no package in the Debian, PyPI or npm lists ships a
runnable server), so each test serves the exact paths its connector calls from a threaded
``http.server`` on 127.0.0.1, with bodies shaped as the vendor's API reference documents (each test
names the doc version). A stand-in can be switched to answer 503 (``mode = "fail"``) or to stall
(``mode = "slow"``) so the tests can show what a down or slow backend does to a connector.

The data: Nezha Train-Ticket, 2023-01-29, the ``return`` fault injected into ts-contacts-service at
08:43:04 UTC (files ``08_44``): two real traces that went through the faulty service and every log line
the recording holds for them. Nezha records no span status, so a span is marked as an error when the
recording has an ERROR log line for it (that is what the injected fault produced)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
from recordings import DATASETS, need_datasets

DAY = DATASETS / "nezha/rca_data/2023-01-29"
TRACES = ("dc7db5cbec8d511cb7e08fd7c7b47c00", "fbb1c2904ee397adaf90efb157db6791")
FAULTY = "ts-contacts-service"


def _service(pod: str) -> str:
    from vigil.ingest.base import service_of_pod
    return service_of_pod(pod)


@lru_cache(maxsize=1)
def nezha_slice() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(logs, spans) of the two traces. logs: ts_ns, service, pod, trace_id, span_id, line.
    spans: trace_id, span_id, parent_id ('' for roots), service, operation, start_ns, end_ns, error."""
    need_datasets()
    raw = pd.read_csv(DAY / "log" / "08_44_log.csv.gz", dtype=str)
    raw = raw[raw.TraceID.isin(TRACES)]
    lines = [json.loads(s)["log"].rstrip("\n") for s in raw.Log]
    logs = pd.DataFrame({"ts_ns": raw.TimeUnixNano.astype("int64").to_numpy(),
                         "service": [_service(p) for p in raw.PodName], "pod": raw.PodName.to_numpy(),
                         "trace_id": raw.TraceID.to_numpy(), "span_id": raw.SpanID.to_numpy(), "line": lines})
    logs = logs.sort_values("ts_ns", kind="stable").reset_index(drop=True)
    tr = pd.read_csv(DAY / "trace" / "08_44_trace.csv.gz", dtype=str)
    tr = tr[tr.TraceID.isin(TRACES)].drop_duplicates(["TraceID", "SpanID"])
    err_spans = set(logs.span_id[logs.line.str.contains(" ERROR ")])
    spans = pd.DataFrame({
        "trace_id": tr.TraceID.to_numpy(), "span_id": tr.SpanID.to_numpy(),
        "parent_id": tr.ParentID.replace("root", "").to_numpy(),
        "service": [_service(p) for p in tr.PodName], "operation": tr.OperationName.to_numpy(),
        "start_ns": tr.StartTimeUnixNano.astype("int64").to_numpy(),
        "end_ns": tr.EndTimeUnixNano.astype("int64").to_numpy()})
    spans["error"] = spans.span_id.isin(err_spans)
    return logs, spans.reset_index(drop=True)


# -- the server ----------------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]


Route = Callable[[Request], tuple[int, Any]]


@dataclass
class StandIn:
    """Serve ``routes`` (exact path, or a prefix ending in '/') on a loopback port. A route returns
    (status, body); a dict/list body is sent as JSON, a str as text/plain."""

    routes: dict[str, Route]
    mode: str = "ok"            # ok | fail | slow
    slow_s: float = 3.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:
                return None

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                req = Request(self.command, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                              body, {k.lower(): v for k, v in self.headers.items()})
                standin.requests.append(req)
                if standin.mode == "slow":
                    time.sleep(standin.slow_s)
                if standin.mode == "fail":
                    status, out = 503, "upstream connect error or disconnect/reset before headers\n"
                else:
                    route = standin.routes.get(parts.path) or next(
                        (r for p, r in standin.routes.items() if p.endswith("/") and parts.path.startswith(p)),
                        None)
                    status, out = route(req) if route else (404, "404 page not found\n")
                data = (json.dumps(out) if isinstance(out, dict | list) else str(out)).encode()
                ctype = "application/json" if isinstance(out, dict | list) else "text/plain; charset=utf-8"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _serve   # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *_a: Any) -> None:
        self.close()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]
