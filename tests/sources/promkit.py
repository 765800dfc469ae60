"""Replay a recorded incident's metrics into a real Prometheus, for tests.

    from sources.promkit import replay_case_metrics

    with replay_case_metrics(DATASETS / "nezha/rca_data/2022-08-22", start=t0, end=t1,
                             services=["frontend", "cartservice"]) as rp:
        rp.url                  # http://127.0.0.1:<port>, a real /usr/bin/prometheus
        rp.source_config()      # {"url": ..., "queries": [...], "step_s": 60}: a `prometheus` source row
        rp.frame                # the [resource, name, ts, value] rows that went in
    # or: url, stop = replay_case_metrics(...); ...; stop()

``source`` is a Nezha day folder (``rca_data/<day>``), a case folder holding one (``demo/nezha-trainticket``),
or a metrics frame ``[resource, name, ts, value]`` (e.g. from an ingest loader or the embedded store).
The rows are written as OpenMetrics (one gauge per engine metric name, label ``service`` = resource),
turned into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` at their real historical
timestamps, and Prometheus is started on a free loopback port over that data dir with a 100-year
retention (so the old blocks are kept) and no scrape targets (so nothing else lands in the head).
``source_config()`` maps every Prometheus metric back to its engine name, so an investigation that
reads metrics through the Prometheus connector sees the same names and values as one that imported
the recording (values at 60 s steps: Nezha records one row per minute)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
_UNITS = {"(%)": "_percent", "(s)": "_seconds", "(m)": "_millicores", "(Mi)": "_mebibytes", "(Ops)": "_ops"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prom_name(name: str, prefix: str = "nezha_") -> str:
    """An engine metric name as a Prometheus metric name: ``CpuUsageRate(%)`` -> ``nezha_CpuUsageRate_percent``."""
    for unit, suffix in _UNITS.items():
        name = name.replace(unit, suffix)
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return prefix + name


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics(frame: pd.DataFrame, prefix: str = "nezha_") -> tuple[str, dict[str, str]]:
    """OpenMetrics text for a metrics frame, and {prometheus name: engine name}. Families are contiguous
    and every series is in time order, as the exposition format and ``promtool`` require."""
    names: dict[str, str] = {}
    out: list[str] = []
    for engine_name, fam in frame.groupby("name", sort=True):
        base = pname = prom_name(str(engine_name), prefix)
        n = 1
        while pname in names:
            n += 1
            pname = f"{base}_{n}"
        names[pname] = str(engine_name)
        out.append(f"# TYPE {pname} gauge")
        for resource, s in fam.groupby("resource", sort=True):
            s = s.sort_values("ts").drop_duplicates("ts", keep="last")
            lab = f'{pname}{{service="{_escape(str(resource))}"}} '
            out.extend(f"{lab}{float(v)!r} {t:.3f}" for t, v in zip(s["ts"].to_numpy(), s["value"].to_numpy(), strict=True))
    out.append("# EOF")
    return "\n".join(out) + "\n", names


def load_frame(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The metrics frame of a Nezha day / case folder (the same rows ``vigil import`` stores) or the frame."""
    if isinstance(source, pd.DataFrame):
        return source[["resource", "name", "ts", "value"]].copy()
    from vigil.ingest.nezha import _metrics

    path = Path(source)
    if not (path / "metric").is_dir():
        days = sorted(p for p in path.glob("rca_data/*") if (p / "metric").is_dir())
        if len(days) != 1:
            raise ValueError(f"{path}: expected one Nezha rca_data/<day> folder, found {len(days)}")
        path = days[0]
    frame, _resources, _edges = _metrics(path, [])
    return frame


@dataclass
class Replay:
    url: str
    queries: list[dict]
    frame: pd.DataFrame
    proc: subprocess.Popen
    workdir: Path
    own_workdir: bool
    log: Path
    _stopped: bool = field(default=False, repr=False)

    def source_config(self, **extra) -> dict:
        """A config for ``PrometheusConnector`` reading this replay under the original metric names."""
        return {"url": self.url, "queries": self.queries, "step_s": 60, **extra}

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __iter__(self):                      # url, stop = replay_case_metrics(...)
        return iter((self.url, self.stop))

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def replay_case_metrics(source: str | Path | pd.DataFrame, *, start: float | None = None, end: float | None = None,
                        services: list[str] | None = None, names: list[str] | None = None,
                        workdir: Path | None = None, prefix: str = "nezha_", rules: str | None = None,
                        timeout: float = 60.0) -> Replay:
    """Start a real Prometheus holding ``source``'s metrics (optionally cut to [start, end], some
    services, some engine metric names). ``rules`` is the text of a Prometheus rule file, evaluated
    every second (rules see *now*, not the replayed past). Returns a ``Replay``; call ``stop()`` (or
    use ``with``)."""
    frame = load_frame(source)
    keep = np.isfinite(frame["ts"].to_numpy(dtype=float)) & np.isfinite(frame["value"].to_numpy(dtype=float))
    if start is not None:
        keep &= frame["ts"].to_numpy() >= start
    if end is not None:
        keep &= frame["ts"].to_numpy() <= end
    if services is not None:
        keep &= frame["resource"].isin(services).to_numpy()
    if names is not None:
        keep &= frame["name"].isin(names).to_numpy()
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise ValueError("no metric rows to replay in that selection")

    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="vigil-prom-")) if own else Path(workdir)
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    text, mapping = openmetrics(frame, prefix)
    (work / "metrics.om").write_text(text)
    p = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(work / "metrics.om"), str(data)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"promtool failed: {p.stderr.strip()[-2000:]}")
    conf = "global:\n  scrape_interval: 1h\n  evaluation_interval: 1s\nscrape_configs: []\n"
    if rules:
        (work / "rules.yml").write_text(rules)
        conf += f"rule_files: [{str(work / 'rules.yml')!r}]\n"
    (work / "prometheus.yml").write_text(conf)
    port = free_port()
    log = work / "prometheus.log"
    fh = open(log, "wb")  # noqa: SIM115 - handed to the process
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
                             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y",
                             "--log.level=warn"], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    fh.close()
    url = f"http://127.0.0.1:{port}"
    replay = Replay(url=url, frame=frame, proc=proc, workdir=work, own_workdir=own, log=log,
                    queries=[{"name": eng, "promql": pn, "resource_label": "service"} for pn, eng in mapping.items()])
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            msg = log.read_text(errors="replace")[-2000:]
            replay.stop()
            raise RuntimeError(f"prometheus exited: {msg}")
        try:
            if httpx.get(url + "/-/ready", timeout=1.0).status_code == 200:
                return replay
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            replay.stop()
            raise RuntimeError("prometheus did not become ready")
        time.sleep(0.1)
