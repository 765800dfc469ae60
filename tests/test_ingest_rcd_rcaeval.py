"""RCD and RCAEval importers, on the small fixtures in tests/fixtures/{rcd,rcaeval}
(written by tests/fixtures/make_rcd_rcaeval.py)."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.bench import run_bench
from vigil.errors import InputError
from vigil.ingest import discover
from vigil.ingest.base import split_metric_columns
from vigil.ingest.rcaeval import parse_label as rcaeval_label
from vigil.ingest.rcd import parse_label as rcd_label
from vigil.model import FaultKind
from vigil.store.telemetry import TelemetryStore

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RCD = FIXTURES / "rcd"
RCAEVAL = FIXTURES / "rcaeval"
T0 = 1692569000            # the RCAEval fixtures' first row; injection 30 s later


def load(rec, space="s"):
    st = TelemetryStore()
    with st.transaction() as w:
        warnings = rec.load(w, space)
    return st, warnings


def by_case(recs):
    return {r.cases[0].id: r for r in recs}


# -- labels and column names --------------------------------------------------------------------
def test_labels_split_on_the_last_separator():
    lb = rcd_label("front-end-cpu")
    assert (lb.resource, lb.fault, lb.fault_kind) == ("front-end", "cpu", FaultKind.CPU)
    assert rcd_label("carts-db-mem").resource == "carts-db" and rcd_label("carts") is None
    lb = rcaeval_label("ts-auth-service_delay")
    assert (lb.resource, lb.fault, lb.fault_kind) == ("ts-auth-service", "delay", FaultKind.NETWORK_DELAY)
    kinds = {f: rcaeval_label(f"svc_{f}").fault_kind for f in ("cpu", "mem", "disk", "delay", "loss", "socket", "f3")}
    assert kinds == {"cpu": FaultKind.CPU, "mem": FaultKind.MEMORY, "disk": FaultKind.DISK,
                     "delay": FaultKind.NETWORK_DELAY, "loss": FaultKind.NETWORK_LOSS,
                     "socket": FaultKind.NETWORK_LOSS, "f3": FaultKind.ERROR}


def test_metric_columns_use_the_longest_known_service():
    cols = ["carts_lat_90", "carts-db_cpu", "front-end_mem", "adservice_latency-90", "orders"]
    assert split_metric_columns(cols) == {
        "carts_lat_90": ("carts", "lat_90"), "carts-db_cpu": ("carts-db", "cpu"),
        "front-end_mem": ("front-end", "mem"), "adservice_latency-90": ("adservice", "latency-90"),
        "orders": ("orders", "value")}
    # a known service name holding '_' (e.g. from the case folder) wins over the first-'_' cut
    assert split_metric_columns(["my_svc_cpu", "my_other_cpu"], ["my_svc"]) == {
        "my_svc_cpu": ("my_svc", "cpu"), "my_other_cpu": ("my", "other_cpu")}


# -- RCD ----------------------------------------------------------------------------------------
def test_rcd_discovery():
    recs = discover([RCD])
    assert {r.format for r in recs} == {"rcd"} and {r.dataset for r in recs} == {"rcd/sock-shop"}
    cases = {c.id: c for r in recs for c in r.cases}
    assert sorted(cases) == ["rcd/sock-shop/carts-cpu/1", "rcd/sock-shop/carts-cpu/2",
                             "rcd/sock-shop/front-end-mem/1", "rcd/sock-shop/orders-delay/1"]
    fe = cases["rcd/sock-shop/front-end-mem/1"].label
    assert (fe.resource, fe.fault, fe.fault_kind) == ("front-end", "mem", FaultKind.MEMORY)
    assert cases["rcd/sock-shop/orders-delay/1"].label.fault_kind is FaultKind.NETWORK_DELAY
    for c in cases.values():      # the label stays out of the alert
        assert c.alert.resource is None and c.alert.metric is None
        assert c.label.resource not in c.alert.model_dump_json()


def test_rcd_import_epoch_times():
    rec = by_case(discover([RCD]))["rcd/sock-shop/carts-cpu/1"]
    st, warnings = load(rec)
    assert warnings == []
    t0 = 1652812000
    assert st.baselines("s") == [(t0, t0 + 59)]                       # normal.csv, marked fault-free
    (alert,) = st.alerts("s")
    assert alert.at == datetime.fromtimestamp(t0 + 180, UTC)          # first anomalous row, left as is
    assert alert.resource is None and "carts" not in alert.model_dump_json()
    assert st.counts("s")["metrics"] == 2 * 60 * 16
    m = st.metrics("s", t0, t0 + 1000, resources=["carts"], names=["cpu"])
    assert len(m) == 120 and m[m["ts"] >= t0 + 180]["value"].min() > 90 > m[m["ts"] < t0 + 60]["value"].max()
    names = set(st.metrics("s", t0, t0 + 1000)["name"])
    assert {"cpu", "mem", "lat_50", "lat_90"} == names                 # metric names keep their '_'
    assert sorted(r.name for r in st.topology("s").resources) == ["carts", "carts-db", "front-end", "orders",
                                                                   "user"]
    assert not st.topology("s").edges


def test_rcd_import_datetime_strings_and_gzip():
    rec = by_case(discover([RCD]))["rcd/sock-shop/front-end-mem/1"]
    assert rec.cases[0].alert.at == datetime(2022, 5, 17, 20, 1, tzinfo=UTC)
    st, warnings = load(rec)
    assert warnings == []
    start = datetime(2022, 5, 17, 20, 0, tzinfo=UTC).timestamp()
    assert st.baselines("s") == [(start, start + 59)]
    m = st.metrics("s", start, start + 120, resources=["front-end"], names=["mem"])
    assert len(m) == 120


def test_rcd_row_indices_are_shifted_after_the_normal_rows():
    rec = by_case(discover([RCD]))["rcd/sock-shop/orders-delay/1"]
    assert rec.cases[0].alert.at.timestamp() == 60.0
    st, warnings = load(rec)
    assert len(warnings) == 1 and "shifted" in warnings[0]
    assert st.baselines("s") == [(0.0, 59.0)]
    m = st.metrics("s", 0, 1000, resources=["orders"], names=["lat_90"])
    assert sorted(m["ts"]) == [float(t) for t in range(120)]
    assert m[m["ts"] >= 60]["value"].min() > m[m["ts"] < 60]["value"].max()


def test_rcd_overlapping_epoch_times_are_shifted(tmp_path):
    run = tmp_path / "ds" / "user-cpu" / "1"
    run.mkdir(parents=True)
    (run / "normal.csv").write_text("time,user_cpu\n" + "".join(f"{1700000000 + i},{i % 3}\n" for i in range(10)))
    (run / "anomalous.csv").write_text("time,user_cpu\n" + "".join(f"{1700000005 + i},90\n" for i in range(10)))
    (rec,) = discover([tmp_path])
    assert rec.dataset == "rcd/ds" and rec.cases[0].alert.at.timestamp() == 1700000010
    st, warnings = load(rec)
    assert any("shifted" in w for w in warnings)
    assert st.baselines("s") == [(1700000000.0, 1700000009.0)]


# -- RCAEval ------------------------------------------------------------------------------------
def test_rcaeval_discovery():
    recs = discover([RCAEVAL])
    assert {r.format for r in recs} == {"rcaeval"}
    assert {r.dataset for r in recs} == {"rcaeval/RE1-TT", "rcaeval/RE2-OB", "rcaeval/RE3-OB"}
    cases = {c.id: c for r in recs for c in r.cases}
    assert sorted(cases) == ["rcaeval/RE1-TT/ts-auth-service_mem/1", "rcaeval/RE2-OB/checkoutservice_cpu/1",
                             "rcaeval/RE2-OB/currencyservice_delay/1", "rcaeval/RE3-OB/emailservice_f1/1"]
    labels = {cid: (c.label.resource, c.label.fault, c.label.fault_kind) for cid, c in cases.items()}
    assert labels["rcaeval/RE1-TT/ts-auth-service_mem/1"] == ("ts-auth-service", "mem", FaultKind.MEMORY)
    assert labels["rcaeval/RE3-OB/emailservice_f1/1"] == ("emailservice", "f1", FaultKind.ERROR)
    assert cases["rcaeval/RE2-OB/checkoutservice_cpu/1"].alert.at == datetime.fromtimestamp(T0 + 30, UTC)
    for c in cases.values():
        assert c.alert.resource is None and c.label.resource not in c.alert.model_dump_json()


def test_rcaeval_multi_source_import():
    rec = by_case(discover([RCAEVAL]))["rcaeval/RE2-OB/checkoutservice_cpu/1"]
    st, warnings = load(rec)
    assert warnings == []
    assert not st.baselines("s")                                 # pre-injection data is plain history
    (alert,) = st.alerts("s")
    assert alert.at.timestamp() == T0 + 30 and "checkout" not in alert.model_dump_json()
    c = st.counts("s")
    assert c["metrics"] == 60 * 5 * 6 and c["logs"] == 180 and c["spans"] == 150
    names = set(st.metrics("s", T0, T0 + 60, resources=["checkoutservice"])["name"])
    # metrics.csv is preferred over its subset simple_metrics.csv.gz
    assert {"cpu", "mem", "latency-50", "latency-90", "error", "container-network-receive-bytes-total"} == names
    cpu = st.metrics("s", T0, T0 + 60, resources=["checkoutservice"], names=["cpu"])
    assert cpu[cpu["ts"] >= T0 + 30]["value"].min() > 80 > cpu[cpu["ts"] < T0 + 30]["value"].max()
    logs = st.logs("s", T0, T0 + 60)
    assert set(logs["resource"]) == {"frontend", "checkoutservice", "emailservice"}   # pod names -> services
    assert set(logs["level"]) == {"INFO"} and T0 <= logs["ts"].min() < logs["ts"].max() < T0 + 61
    spans = st.spans("s", T0, T0 + 60)
    root = spans[spans["resource"] == "frontend"].iloc[0]
    assert root["parent_id"] == "" and root["start"] == pytest.approx(T0 + 0.1)
    assert 2.0 <= root["duration_ms"] <= 4.0                       # µs -> ms
    assert not spans["error"].any()
    topo = st.topology("s")
    assert set(topo.callees("frontend")) == {"checkoutservice"}
    assert set(topo.callees("checkoutservice")) == {"currencyservice", "paymentservice", "emailservice"}
    assert all(e.source == "traces" for e in topo.edges)


def test_rcaeval_code_fault_logs_and_error_spans():
    rec = by_case(discover([RCAEVAL]))["rcaeval/RE3-OB/emailservice_f1/1"]
    st, warnings = load(rec)
    assert warnings == []
    logs = st.logs("s", T0, T0 + 60, resources=["emailservice"])
    errors = logs[logs["level"] == "ERROR"]
    assert len(errors) == 30 and errors["ts"].min() >= T0 + 30
    spans = st.spans("s", T0, T0 + 60)
    bad = spans[spans["error"]]
    assert len(bad) == 15 and set(bad["resource"]) == {"emailservice"}


def test_rcaeval_missing_logs_and_traces_warn():
    recs = by_case(discover([RCAEVAL]))
    st, warnings = load(recs["rcaeval/RE2-OB/currencyservice_delay/1"])
    assert len(warnings) == 2
    assert any("no logs.csv" in w for w in warnings) and any("no traces.csv" in w for w in warnings)
    assert st.counts("s")["metrics"] == 60 * 5 * 4 and st.counts("s")["logs"] == 0
    assert sorted(r.name for r in st.topology("s").resources) == ["checkoutservice", "currencyservice",
                                                                   "emailservice", "frontend", "paymentservice"]
    st, warnings = load(recs["rcaeval/RE1-TT/ts-auth-service_mem/1"])    # RE1: data.csv.gz only
    assert len(warnings) == 2 and st.counts("s")["metrics"] == 60 * 4 * 4
    assert "ts-auth-mongo" in {r.name for r in st.topology("s").resources}


# -- malformed input ----------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _load_all(root: Path) -> None:
    for rec in discover([root]):
        load(rec)


def test_rcd_malformed_files_raise_input_errors(tmp_path):
    run = _copy(RCD / "sock-shop" / "carts-cpu" / "1", tmp_path / "a" / "ds" / "carts-cpu" / "1")
    with open(run / "anomalous.csv", "a") as fh:
        fh.write("1652900000" + ",1" * 20 + "\n")                    # a row with too many fields
    with pytest.raises(InputError, match=r"anomalous\.csv"):
        _load_all(tmp_path / "a")
    run = _copy(RCD / "sock-shop" / "carts-cpu" / "1", tmp_path / "b" / "ds" / "carts-cpu" / "1")
    (run / "normal.csv").write_text("timestamp,carts_cpu\n1,2\n")
    with pytest.raises(InputError, match=r"normal\.csv: no 'time' column"):
        _load_all(tmp_path / "b")
    run = _copy(RCD / "sock-shop" / "carts-cpu" / "1", tmp_path / "c" / "ds" / "carts-cpu" / "1")
    (run / "normal.csv").write_text("time,carts_cpu\n1652800000,2\nyesterday-ish,3\n")
    with pytest.raises(InputError, match=r"normal\.csv: unreadable time value 'yesterday-ish'"):
        _load_all(tmp_path / "c")
    run = tmp_path / "d" / "ds" / "carts-cpu" / "1"
    run.mkdir(parents=True)
    (run / "normal.csv.gz").write_bytes(b"\x1f\x8b not really gzip")
    (run / "anomalous.csv").write_text("time,carts_cpu\n1,2\n")
    with pytest.raises(InputError, match=r"normal\.csv\.gz: cannot read CSV"):
        _load_all(tmp_path / "d")


def test_rcaeval_malformed_files_raise_input_errors(tmp_path):
    src = RCAEVAL / "RE2-OB" / "checkoutservice_cpu" / "1"
    run = _copy(src, tmp_path / "a" / "RE2-OB" / "checkoutservice_cpu" / "1")
    (run / "inject_time.txt").write_text("soon\n")
    with pytest.raises(InputError, match=r"inject_time\.txt: not an epoch-seconds inject time"):
        _load_all(tmp_path / "a")
    run = _copy(src, tmp_path / "b" / "RE2-OB" / "checkoutservice_cpu" / "1")
    (run / "metrics.csv").write_text("time,checkoutservice_cpu\n1692569000,1\n1692569001,2,3,4\n")
    with pytest.raises(InputError, match=r"metrics\.csv: cannot read CSV"):
        _load_all(tmp_path / "b")
    run = _copy(src, tmp_path / "c" / "RE2-OB" / "checkoutservice_cpu" / "1")
    with gzip.open(run / "logs.csv.gz", "wt") as fh:
        fh.write("when,who,what\n1,frontend,hello\n")
    with pytest.raises(InputError, match=r"logs\.csv\.gz: not an RCAEval log file"):
        _load_all(tmp_path / "c")
    run = _copy(src, tmp_path / "d" / "RE2-OB" / "checkoutservice_cpu" / "1")
    (run / "traces.csv").write_text("traceID,spanID\nabc,def\n")
    with pytest.raises(InputError, match=r"traces\.csv: not an RCAEval trace file"):
        _load_all(tmp_path / "d")
    # a missing metrics table is not fatal when logs/traces exist: it warns
    run = _copy(src, tmp_path / "e" / "RE2-OB" / "checkoutservice_cpu" / "1")
    (run / "metrics.csv").unlink()
    (run / "simple_metrics.csv.gz").unlink()
    (rec,) = discover([tmp_path / "e"])
    st, warnings = load(rec)
    assert any("no metrics file" in w for w in warnings) and st.counts("s")["spans"] == 150


# -- the benchmark, end to end ------------------------------------------------------------------
def test_bench_runs_end_to_end_over_the_fixtures():
    report = run_bench([RCD, RCAEVAL])
    contract = report.contract()
    assert {"results", "by_fault", "calibration", "cases", "warnings", "peak_rss_mb", "total_s"} <= set(contract)
    counts = {(r["dataset"], r["method"]): r["cases"] for r in report.results}
    expected = {"rcd/sock-shop": 4, "rcaeval/RE1-TT": 1, "rcaeval/RE2-OB": 2, "rcaeval/RE3-OB": 1}
    assert counts == {(ds, "vigil"): n for ds, n in expected.items()}
    for r in report.results:
        assert {"ac@1", "ac@3", "ac@5", "avg@5", "median_s", "max_s"} <= set(r)
        assert 0.0 <= r["ac@1"] <= r["ac@3"] <= r["ac@5"] <= 1.0
    assert len(report.cases) == 8
    assert any("shifted" in w for w in report.warnings) and any("no logs.csv" in w for w in report.warnings)
    # the obvious CPU spikes: the labeled service is in vigil's top 3
    spikes = [c for c in report.cases if c["method"] == "vigil" and c["fault"] == "cpu"]
    assert len(spikes) == 3
    for c in spikes:
        assert c["truth"] in c["top5"][:3], c
