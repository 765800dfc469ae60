"""The embedded DuckDB telemetry store: the query interface, transactions, isolation by space."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from vigil.model import Alert, Edge, Resource, Topology
from vigil.sources import TelemetrySource
from vigil.store.telemetry import TelemetryStore


def _metrics(n=10, resource="cart"):
    return pd.DataFrame({"resource": resource, "name": "cpu", "ts": [1000.0 + 60 * i for i in range(n)],
                         "value": [float(i) for i in range(n)]})


def test_round_trip_and_windows(tmp_path):
    st = TelemetryStore(tmp_path / "t.duckdb")
    assert isinstance(st, TelemetrySource)
    with st.transaction() as w:
        w.metrics("a", _metrics())
        w.logs("a", pd.DataFrame({"resource": ["cart"] * 3, "ts": [1000.0, 1100.0, 1200.0], "level": ["INFO", "ERROR", ""],
                                  "body": ["ok", "boom failed", "ok"], "trace_id": "", "span_id": ""}))
        w.spans("a", pd.DataFrame({"trace_id": ["t"], "span_id": ["s"], "parent_id": [""], "resource": ["cart"],
                                   "operation": ["GET"], "start": [1100.0], "duration_ms": [12.5], "error": [False]}))
        w.topology("a", Topology(resources=[Resource(name="cart")], edges=[Edge(src="web", dst="cart")]))
        w.baseline("a", 0.0, 500.0, "quiet")
        w.alert("a", Alert(id="x", at=datetime.fromtimestamp(1100, UTC), resource="web", metric="latency"))
        w.metrics("b", _metrics(resource="other"))
    m = st.metrics("a", 1060.0, 1240.0)
    assert list(m["ts"]) == [1060.0, 1120.0, 1180.0] and set(m["resource"]) == {"cart"}
    assert len(st.logs("a", 0, 2000, contains="failed")) == 1
    assert st.spans("a", 0, 2000)["duration_ms"].tolist() == [12.5]
    assert st.topology("a").callers("cart") == ["web"]
    assert st.baselines("a") == [(0.0, 500.0)]
    assert st.alerts("a")[0].resource == "web"
    assert st.metrics("b", 0, 5000)["resource"].unique().tolist() == ["other"]   # spaces do not mix
    assert st.metrics("a", 0, 5000, names=["mem"]).empty
    st.close()
    again = TelemetryStore(tmp_path / "t.duckdb")
    assert again.counts("a")["metrics"] == 10      # durable across reopen
    again.close()


def test_failed_import_leaves_nothing_half_written():
    st = TelemetryStore()
    with st.transaction() as w:
        w.metrics("a", _metrics())
    with pytest.raises(RuntimeError):
        with st.transaction() as w:
            w.drop_space("a")
            w.metrics("a", _metrics(3))
            raise RuntimeError("disk full halfway")
    assert st.counts("a")["metrics"] == 10         # the old data is intact, none of the new landed
