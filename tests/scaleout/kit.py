"""Scale-out deployments made of real processes on this machine: `vigil serve` replicas and `vigil worker`s
on a fresh PostgreSQL schema and a broker queue of their own (RabbitMQ or Redis, both run here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from e2e.kit import ServeProcess, vigil_cli
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BROKERS = {"amqp": os.environ.get("VIGIL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
           "redis": os.environ.get("VIGIL_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")}


class WorkerProcess:
    """``vigil worker`` as a separate process."""

    def __init__(self, home: Path, env: dict[str, str], concurrency: int = 1) -> None:
        self.home, self.env, self.concurrency = home, env, concurrency
        self.proc: subprocess.Popen | None = None
        self.log = home / f"worker-{uuid.uuid4().hex[:6]}.log"

    def start(self) -> WorkerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "vigil", "worker", "--concurrency", str(self.concurrency)],
                                     env=self.env, stdout=fh, stderr=fh, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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


class Deployment:
    """One scale-out deployment: its environment, replicas and workers (stopped by ``close``)."""

    def __init__(self, home: Path, broker: str = "amqp", **extra_env: str) -> None:
        self.home = home
        self.schema = f"vigil_so_{uuid.uuid4().hex[:10]}"
        self.queue = f"vigil.test.{uuid.uuid4().hex[:10]}"
        self.broker_url = BROKERS[broker]
        self.database_url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{self.schema}"
        admin = create_engine(PG_URL)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        self.secret_key = Fernet.generate_key().decode()
        self.env = {**os.environ, "VIGIL_HOME": str(home), "VIGIL_DATABASE_URL": self.database_url,
                    "VIGIL_BROKER_URL": self.broker_url, "VIGIL_BROKER_QUEUE": self.queue,
                    "VIGIL_SECRET_KEY": self.secret_key, **extra_env}
        self.env.pop("VIGIL_SECRET_KEY_FILE", None)
        self.env.pop("VIGIL_TELEMETRY_URL", None)
        self.serves: list[ServeProcess] = []
        self.workers: list[WorkerProcess] = []

    def cli(self, *args: str):
        return vigil_cli(*args, home=self.home, env=self.env)

    def serve(self) -> ServeProcess:
        s = ServeProcess(self.home, env=self.env).start(timeout=120)
        self.serves.append(s)
        return s

    def worker(self, concurrency: int = 1) -> WorkerProcess:
        w = WorkerProcess(self.home, self.env, concurrency).start()
        self.workers.append(w)
        return w

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.home.glob("*.log")))

    def close(self) -> None:
        for p in [*self.serves, *self.workers]:
            p.stop()
        try:
            from kombu import Connection
            with Connection(self.broker_url, connect_timeout=3) as conn:
                conn.default_channel.queue_delete(self.queue)
        except Exception:   # noqa: BLE001 - a queue left behind is harmless
            pass
        admin = create_engine(PG_URL)
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()


def owner_pid(owner: str | None) -> int | None:
    """The process id in a job's owner (``host:pid:nonce``)."""
    try:
        return int(str(owner).split(":")[1])
    except (IndexError, ValueError):
        return None
