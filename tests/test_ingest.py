"""Importers on the real recordings in ../shared/datasets."""

from __future__ import annotations

import dataclasses
import gzip
from datetime import UTC, datetime

import pytest

from vigil.errors import InputError
from vigil.ingest import discover
from vigil.ingest.base import service_of_pod
from vigil.model import FaultKind
from vigil.store.telemetry import TelemetryStore


def test_discovers_every_labeled_case(datasets):
    recs = discover([datasets])
    by_fmt = {}
    for r in recs:
        by_fmt.setdefault(r.format, []).extend(r.cases)
    assert len(by_fmt["nezha"]) == 52 and len(by_fmt["petshop"]) == 34
    assert all(c.label is not None for cases in by_fmt.values() for c in cases)


def test_nezha_cases_use_inject_time_and_hide_labels_from_the_alert(datasets):
    (tt,) = [r for r in discover([datasets / "nezha"]) if r.dataset == "nezha/trainticket/2023-01-29"]
    first = tt.cases[0]
    assert first.alert.at == datetime(2023, 1, 29, 8, 43, 4, tzinfo=UTC)   # inject_time, not inject_timestamp
    assert first.alert.resource is None and first.alert.metric is None
    assert first.label.resource == "ts-contacts-service" and first.label.fault_kind is FaultKind.LOGIC
    assert "contacts" not in first.alert.model_dump_json()


def test_nezha_trainticket_import(datasets):
    (tt,) = [r for r in discover([datasets / "nezha"]) if r.dataset == "nezha/trainticket/2023-01-29"]
    st = TelemetryStore()
    with st.transaction() as w:
        warnings = tt.load(w, "tt")
    c = st.counts("tt")
    assert c["metrics"] > 500_000 and c["logs"] > 150_000 and c["spans"] > 300_000 and c["alerts"] == 28
    assert any("malformed" in w for w in warnings)          # the one broken row of 10_06 is skipped, not fatal
    topo = st.topology("tt")
    assert "ts-travel-service" in topo.callees("ts-gateway-service") or topo.edges   # learned from traces
    assert all(e.source == "traces" for e in topo.edges)
    (b0, b1), = st.baselines("tt")
    assert datetime.fromtimestamp(b0, UTC).strftime("%H:%M") == "08:48"
    logs = st.logs("tt", b0, b1 + 1, resources=["ts-contacts-service"], limit=5)
    assert len(logs) == 5 and not logs["body"].str.startswith("{").any()    # the container JSON is unwrapped
    m = st.metrics("tt", b0, b1 + 60, resources=["ts-contacts-service"], names=["CpuUsageRate(%)"])
    assert len(m) >= 2


def test_online_boutique_import_warns_about_missing_files(datasets):
    (ob,) = [r for r in discover([datasets / "nezha"]) if r.dataset == "nezha/onlineboutique/2022-08-22"]
    st = TelemetryStore()
    with st.transaction() as w:
        warnings = ob.load(w, "ob")
    assert any("no log file" in w for w in warnings) and any("no trace file" in w for w in warnings)
    topo = st.topology("ob")
    assert "checkoutservice" in topo.callees("frontend")                 # from dependency.csv
    # the corrupt adservice TimeStamp column is ignored: times come from the Time string
    m = st.metrics("ob", 1661140000, 1661150000, resources=["adservice"])
    assert m["ts"].max() < 1661150000 and len(m) > 0


def test_petshop_alert_and_label(datasets):
    recs = [r for r in discover([datasets / "petshop"]) if r.path.name == "issue_0" and "test" in str(r.path)
            and "low_traffic" in str(r.path)]
    (rec,) = recs
    (case,) = rec.cases
    assert case.alert.resource == "PetSite" and case.alert.metric == "latency:Average"
    assert case.label.resource == "petInfo_AWS::DynamoDB::Table"
    assert "reproducibility" not in repr(dataclasses.asdict(case)) and "issue_dynamo" not in repr(case)
    st = TelemetryStore()
    with st.transaction() as w:
        rec.load(w, "p")
    assert st.baselines("p")                       # noissue marked as normal operation
    assert "PetSearch_AWS::ECS::Fargate" in st.topology("p").callees("PetSite")


def test_temporal_traffic_without_noissue_warns(datasets):
    rec = next(r for r in discover([datasets / "petshop"]) if "temporal_traffic1" in str(r.path))
    st = TelemetryStore()
    with st.transaction() as w:
        warnings = rec.load(w, "p")
    assert any("noissue" in w for w in warnings) and not st.baselines("p")


def test_pod_names():
    assert service_of_pod("ts-contacts-service-866bd68c97-xcqfx") == "ts-contacts-service"
    assert service_of_pod("frontend-579b9bff58-t2dbm") == "frontend"
    assert service_of_pod("redis") == "redis"


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        discover([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no recording in a known format"):
        discover([tmp_path / "empty"])
    issue = tmp_path / "scn" / "test" / "issue_0"
    issue.mkdir(parents=True)
    (issue / "target.json").write_text("{not json")
    with gzip.open(issue / "metrics.csv.gz", "wt") as fh:
        fh.write("a,b\n1,2\n")
    with pytest.raises(InputError, match="target.json"):
        discover([tmp_path / "scn"])
