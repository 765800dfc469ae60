"""PrometheusConnector against the real Prometheus binary, holding a real recorded incident: Nezha's
Online Boutique, 2022-08-22, CPU consumption injected into frontend at 04:10:20 UTC, backfilled with promtool at its historical timestamps (see promkit)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from sources.promkit import PROMETHEUS, PROMTOOL, replay_case_metrics
from vigil.errors import InputError
from vigil.sources.connector import SourceError, build, validate_config
from vigil.sources.prometheus import MAX_POINTS, PrometheusConnector, choose_step, expand

INJECT = 1661141420.0                       # 2022-08-22 04:10:20 UTC, cpu_consumed on frontend-579b9bff58-t2dbm
START, END = INJECT - 8 * 60, INJECT + 4 * 60
SERVICES = ["frontend", "cartservice", "checkoutservice"]
RULES = """
groups:
  - name: test
    rules:
      - alert: FrontendSlow
        expr: vector(1)
        labels: {service: frontend, severity: page}
        annotations: {summary: Frontend latency is high}
      - alert: NeverFires
        expr: vector(1) > 2
"""


@pytest.fixture(scope="module")
def replay(datasets):
    import shutil
    if not shutil.which(PROMETHEUS) or not shutil.which(PROMTOOL):
        pytest.fail("prometheus and promtool are not installed (apt-get install prometheus)")
    rp = replay_case_metrics(datasets / "nezha" / "rca_data" / "2022-08-22", start=START - 300, end=END + 300,
                             services=SERVICES, rules=RULES)
    yield rp
    rp.stop()


@pytest.fixture
def conn(replay) -> PrometheusConnector:
    c = build("prom", "prometheus", replay.source_config())
    yield c
    c.close()


def _latest_at_or_before(raw, ts: float) -> float:
    """What PromQL evaluates at ``ts`` for a gauge: the newest sample at or before it (within 5 min)."""
    before = raw[raw["ts"] <= ts + 1e-6]
    assert len(before) and ts - before["ts"].iloc[-1] < 300
    return float(before["value"].iloc[-1])


def test_range_queries_return_the_recorded_series_values_and_timestamps(conn, replay):
    df = conn.metrics(START, END)
    assert set(df.columns) == {"resource", "name", "ts", "value"}
    assert set(df["resource"]) == set(SERVICES)
    assert set(df["name"]) == set(replay.frame["name"])              # the original engine names, back again
    assert "CpuUsageRate(%)" in set(df["name"]) and "PodServerLatencyP95(s)" in set(df["name"])
    # steps of 60 s, aligned, inside the window
    ts = np.sort(df["ts"].unique())
    assert ts[0] >= START and ts[-1] <= END and set(np.diff(ts)) == {60.0} and ts[0] % 60 == 0
    assert len(ts) == 12
    # every value is the recorded sample Prometheus sees at that step
    for (res, name), got in df.groupby(["resource", "name"]):
        raw = replay.frame[(replay.frame.resource == res) & (replay.frame.name == name)].sort_values("ts")
        for t, v in zip(got["ts"], got["value"], strict=True):
            assert v == pytest.approx(_latest_at_or_before(raw, t), rel=1e-9, abs=1e-12), (res, name, t)
    # the real incident is in there: frontend's CPU jumps after the injection
    cpu = df[(df.resource == "frontend") & (df.name == "CpuUsageRate(%)")]
    before, after = cpu[cpu.ts < INJECT]["value"].median(), cpu[(cpu.ts > INJECT + 60)]["value"].median()
    assert after > 2 * before, (before, after)


def test_filters_by_resource_and_name(conn):
    df = conn.metrics(START, END, resources=["cartservice"], names=["MemoryUsage(Mi)", "no-such-metric"])
    assert set(df["resource"]) == {"cartservice"} and set(df["name"]) == {"MemoryUsage(Mi)"}
    assert len(df) == 12
    assert conn.metrics(START, END, names=["no-such-metric"]).empty
    assert conn.metrics(END, START).empty


def test_instant_range_vector_gives_the_raw_recorded_samples(conn, replay):
    got = conn.instant('nezha_CpuUsageRate_percent{service="frontend"}[10m]', at=INJECT)
    assert len(got) == 1 and got[0][0]["service"] == "frontend"
    raw = replay.frame[(replay.frame.resource == "frontend") & (replay.frame.name == "CpuUsageRate(%)")]
    raw = raw[(raw.ts > INJECT - 600) & (raw.ts <= INJECT)].sort_values("ts")
    assert [t for t, _ in got[0][1]] == pytest.approx(list(raw["ts"]), abs=1e-3)
    assert [v for _, v in got[0][1]] == pytest.approx(list(raw["value"]))
    assert conn.instant("1 + 1") == [({}, [(pytest.approx(time.time(), abs=60), 2.0)])]


def test_step_widens_to_stay_under_the_points_limit(conn, replay):
    assert choose_step(0, 3600, 15) == 15
    assert choose_step(0, 30 * 86400, 15) == 236 and 30 * 86400 / 236 < MAX_POINTS
    # a 30-day window at a 1 s step would be refused by Prometheus ("exceeded maximum resolution")
    cfg = replay.source_config(step_s=1, queries=[{"name": "cpu", "promql": "nezha_CpuUsageRate_percent"}])
    c = build("wide", "prometheus", cfg)
    df = c.metrics(INJECT - 15 * 86400, INJECT + 15 * 86400, resources=["frontend"])
    assert len(df) > 0 and df["ts"].diff().dropna().min() >= 236
    assert expand("rate(x[$__rate_interval]) $__interval $__range", 60, 3600, 15) == "rate(x[120s]) 60s 3600s"


def test_firing_alerts_become_vigil_alerts(conn):
    deadline = time.monotonic() + 20
    while not (alerts := conn.alerts()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert a.title == "Frontend latency is high" and a.resource == "frontend"
    assert a.labels["alertname"] == "FrontendSlow" and a.labels["severity"] == "page"
    assert a.fingerprint.startswith("prometheus:") and a.id == a.fingerprint
    assert abs(a.at.timestamp() - time.time()) < 120


def test_check_reports_the_version(conn):
    line = conn.check()
    assert line.startswith("Prometheus 2.") and "answered" in line and "\n" not in line


def test_a_bad_query_is_a_one_line_error(replay):
    c = build("bad", "prometheus", replay.source_config(queries=[{"name": "x", "promql": "sum(("}]))
    with pytest.raises(SourceError) as ei:
        c.metrics(START, END)
    msg = str(ei.value)
    # Prometheus's errorType, never the answer's text (the URL may point at any service on the host's networks)
    assert msg.endswith("refused a range query: HTTP 400 (bad_data)") and "parse error" not in msg, msg


def test_a_down_prometheus_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("PROM_TOKEN", "s3cr3t-token-value")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    c = build("down", "prometheus", {"url": f"http://user:pw@127.0.0.1:{port}", "token": {"env": "PROM_TOKEN"}})
    for call in (c.check, lambda: c.metrics(START, END), c.alerts):
        with pytest.raises(SourceError) as ei:
            call()
        msg = str(ei.value)
        assert msg.startswith(f"cannot reach Prometheus at http://127.0.0.1:{port}"), msg
        assert "\n" not in msg and "s3cr3t" not in msg and "pw" not in msg


def test_the_timeout_is_honored():
    """A server that accepts the connection and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    th = threading.Thread(target=accept, daemon=True)
    th.start()
    try:
        c = build("slow", "prometheus", {"url": f"http://127.0.0.1:{srv.getsockname()[1]}", "timeout_s": 0.5})
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"did not answer a range query within 0.5 s"):
            c.metrics(START, END, names=["cpu_usage_cores"])
        assert time.monotonic() - t0 < 3
    finally:
        stop.set()
        th.join(2)
        for s in held:
            s.close()
        srv.close()


def test_config_is_validated():
    with pytest.raises(InputError, match="link-local"):
        validate_config("prometheus", {"url": "http://169.254.169.254"})
    with pytest.raises(InputError, match="queries.0.promql"):
        validate_config("prometheus", {"url": "http://127.0.0.1:9090", "queries": [{"name": "x"}]})
    with pytest.raises(InputError, match="Extra inputs"):
        validate_config("prometheus", {"url": "http://127.0.0.1:9090", "password": "x"})
    c = build("d", "prometheus", {"url": "http://127.0.0.1:9090/"})
    assert c.config.url == "http://127.0.0.1:9090" and [q.name for q in c.queries][:2] == [
        "cpu_usage_cores", "memory_working_set_bytes"]
    assert c.roles == {"metrics", "alerts"}


def test_through_space_sources_with_a_down_sibling(replay):
    """A stored row as the server keeps it: the router merges Prometheus' rows into the embedded store's
    and a dead second Prometheus becomes a 'partial evidence' problem, not a failure."""
    from vigil.sources.router import SpaceSources
    from vigil.store.telemetry import TelemetryStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    rows = [{"name": "prom", "kind": "prometheus", "config": replay.source_config()},
            {"name": "old-prom", "kind": "prometheus", "config": {"url": f"http://127.0.0.1:{dead}"}}]
    ss = SpaceSources(TelemetryStore(), lambda space: rows)
    try:
        df = ss.metrics("shop", START, END, names=["CpuUsageRate(%)"])   # only `prom` has a query by that name
        assert set(df["resource"]) == set(SERVICES) and len(df) == 3 * 12
        assert df.attrs["rows_by_source"]["prom"] == 36 and df.attrs["problems"] == []
        df = ss.metrics("shop", START, END)
        assert len(df) == len(replay.source_config()["queries"]) * 3 * 12
        assert df.attrs["problems"] == [f"source 'old-prom' (prometheus) failed on metrics: cannot reach Prometheus at "
                                        f"http://127.0.0.1:{dead}: [Errno 111] Connection refused"]
        deadline = time.monotonic() + 20
        while not (alerts := ss.alerts("shop")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [a.labels["alertname"] for a in alerts] == ["FrontendSlow"]
    finally:
        ss.close()
