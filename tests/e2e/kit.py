"""Shared helpers for the server tests: a real uvicorn server on a loopback port (in a thread of
the test process, or as a ``vigil serve`` subprocess), HTTP helpers and event-stream reading."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from vigil.api import create_app
from vigil.app import App
from vigil.config import Settings
from vigil.model import AgentSpace, Role
from vigil.server.runtime import Runtime
from vigil.server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(home: Path, database_url: str | None = None) -> Settings:
    return Settings(home=home, database_url=database_url or f"sqlite:///{home / 'state.db'}",
                    telemetry_path=home / "telemetry.duckdb", reports_dir=home / "reports").ensure()


@dataclass
class Live:
    url: str
    runtime: Runtime

    @property
    def state(self):
        return self.runtime.state

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kw)

    def space(self, space_id: str, **kw) -> str:
        self.state.put_space(AgentSpace(id=space_id, name=space_id, **kw))
        return space_id

    def token(self, space_id: str, role: Role = Role.ADMIN, name: str = "test") -> str:
        return self.state.create_token(space_id, role, name=name)[0]


# VIGIL_TEST_MODE=scaleout runs the server tests in scale-out mode (see ``scaleout_runtime``)
SCALEOUT = os.environ.get("VIGIL_TEST_MODE", "").strip().lower() == "scaleout"


@contextmanager
def live_server(home: Path, database_url: str | None = None, **server_settings):
    """The real app on uvicorn, listening on a free loopback port, in a thread of this process."""
    if SCALEOUT:
        with scaleout_runtime(home, database_url, **server_settings) as rt:
            with _serve(rt) as live:
                yield live
        return
    rt = Runtime(App(settings_for(home, database_url)), ServerSettings(**server_settings))
    with _serve(rt) as live:
        yield live


@contextmanager
def _serve(rt: Runtime):
    config = uvicorn.Config(create_app(rt), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(f"http://127.0.0.1:{port}", rt)
    finally:
        server.should_exit = True
        th.join(30)


class ServeProcess:
    """``vigil serve`` as a separate process (for crash tests and the end-to-end test)."""

    def __init__(self, home: Path, port: int | None = None, env: dict[str, str] | None = None,
                 workers: int = 2) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "VIGIL_HOME": str(home), **(env or {})}
        self.env.pop("VIGIL_DATABASE_URL", None) if "VIGIL_DATABASE_URL" not in (env or {}) else None
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.log = home / f"serve-{self.port}.log"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "vigil", "serve", "--port", str(self.port),
                                      "--workers", str(self.workers)], env=self.env, stdout=fh, stderr=fh,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigil serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"vigil serve did not become ready: {self.log.read_text()[-2000:]}")

    def children(self) -> list[int]:
        """Process ids of the server's child processes (its analysts)."""
        assert self.proc is not None
        out = []
        for f in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            out += [int(x) for x in f.read_text().split()]
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@contextmanager
def scaleout_runtime(home: Path, database_url: str | None = None, **server_settings):
    """A server runtime in scale-out mode, for the server tests under VIGIL_TEST_MODE=scaleout: state and
    telemetry in PostgreSQL (a fresh schema, unless the test gave a PostgreSQL URL), investigations
    published to a broker queue of their own (VIGIL_TEST_BROKER_URL, default the local RabbitMQ) and run
    by a real `vigil worker` process consuming it, with the test's server settings."""
    import uuid

    from cryptography.fernet import Fernet
    from sqlalchemy import create_engine, text

    os.environ.setdefault("VIGIL_SECRET_KEY", Fernet.generate_key().decode())
    pg = os.environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = None
    if not (database_url or "").startswith("postgresql"):
        schema = f"vigil_tm_{uuid.uuid4().hex[:10]}"
        admin = create_engine(pg)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        database_url = f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    broker = {"broker_url": os.environ.get("VIGIL_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
              "broker_queue": f"vigil.test.{uuid.uuid4().hex[:10]}"}
    settings = Settings(home=home, database_url=database_url, telemetry_path=home / "telemetry.duckdb",
                        reports_dir=home / "reports", telemetry_url=database_url).ensure()
    server_settings = {**server_settings, **broker}
    rt = Runtime(App(settings), ServerSettings(**server_settings))
    names = {"workers": "VIGIL_WORKERS", "analysis": "VIGIL_ANALYSIS", "max_attempts": "VIGIL_MAX_ATTEMPTS",
             "first_answer_window_s": "VIGIL_FIRST_ANSWER_WINDOW_S", "job_lease_s": "VIGIL_JOB_LEASE_S",
             "broker_url": "VIGIL_BROKER_URL", "broker_queue": "VIGIL_BROKER_QUEUE"}
    env = {**os.environ, "VIGIL_HOME": str(home), "VIGIL_DATABASE_URL": database_url,
           **{names[k]: str(v) for k, v in server_settings.items() if k in names}}
    env.pop("VIGIL_TELEMETRY_URL", None)
    log = open(home / "worker.log", "ab")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([sys.executable, "-m", "vigil", "worker"], env=env, stdout=log, stderr=log,
                              start_new_session=True)
    try:
        yield rt
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        log.close()
        try:
            with rt.dispatch.celery.connection_for_write() as conn:
                conn.default_channel.queue_delete(rt.dispatch.queue)
        except Exception:   # noqa: BLE001 - a queue left behind is harmless
            pass
        if schema is not None:
            admin = create_engine(pg)
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


def vigil_cli(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "VIGIL_HOME": str(home), **(env or {})}
    if "VIGIL_DATABASE_URL" not in (env or {}):
        e.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=e, timeout=300)


def read_events(client: httpx.Client, path: str, timeout: float = 60.0, headers: dict | None = None) -> list[tuple]:
    """Read a Server-Sent Events stream to its end: [(event, id, data), ...]."""
    events, ev, eid, data = [], None, None, []
    with client.stream("GET", path, timeout=timeout, headers=headers or {}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("id:"):
                eid = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and ev is not None:
                events.append((ev, eid, json.loads("\n".join(data))))
                if ev == "end":
                    break
                ev, eid, data = None, None, []
    return events


def wait_for(fn, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


# -- a real Prometheus and Alertmanager (Debian's packages) ---------------------------------------------
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def need_prometheus() -> None:
    import pytest
    if not PROMETHEUS or not ALERTMANAGER:
        pytest.fail("prometheus and prometheus-alertmanager are not installed "
                    "(apt-get install prometheus prometheus-alertmanager; .ci/run does it)")


def start_logged(cmd: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def http_ready(url: str, timeout: float = 60.0) -> None:
    def up():
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, timeout, 0.2, url)


class PrometheusStack:
    """A real Prometheus scraping ``targets`` every second and evaluating ``rules`` (YAML), and a real
    Alertmanager posting its alerts (and their resolution) to ``webhook_url`` with a bearer token."""

    def __init__(self, folder: Path, webhook_url: str, token: str, targets: list[str], rules: str) -> None:
        self.folder, self.webhook_url, self.token, self.targets, self.rules = folder, webhook_url, token, targets, rules
        self.procs: list[subprocess.Popen] = []
        self.prom_port, self.am_port = free_port(), free_port()
        self.prom_url = f"http://127.0.0.1:{self.prom_port}"

    def __enter__(self) -> PrometheusStack:
        need_prometheus()
        f = self.folder
        (f / "am.yml").write_text(f"""
route:
  receiver: vigil
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: vigil
    webhook_configs:
      - url: {self.webhook_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {self.token}
""")
        (f / "rules.yml").write_text(self.rules)
        targets = ", ".join(f'"{t}"' for t in self.targets)
        (f / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{self.am_port}"]
rule_files: ["{f / 'rules.yml'}"]
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: [{targets}]
""")
        self.procs.append(start_logged([ALERTMANAGER, f"--config.file={f / 'am.yml'}", f"--storage.path={f / 'am-data'}",
                                        f"--web.listen-address=127.0.0.1:{self.am_port}", "--cluster.listen-address="],
                                       f / "alertmanager.log"))
        self.procs.append(start_logged([PROMETHEUS, f"--config.file={f / 'prometheus.yml'}",
                                        f"--storage.tsdb.path={f / 'prom-data'}",
                                        f"--web.listen-address=127.0.0.1:{self.prom_port}"], f / "prometheus.log"))
        http_ready(f"http://127.0.0.1:{self.am_port}/-/ready")
        http_ready(f"{self.prom_url}/-/ready")
        return self

    def scraping(self, job: str = "shop") -> bool:
        r = httpx.get(f"{self.prom_url}/api/v1/query", params={"query": f"up{{job='{job}'}}"}).json()
        return any(x["value"][1] == "1" for x in r["data"]["result"])

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
