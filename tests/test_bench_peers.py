"""``vigil bench --peers``: rcaeval's own methods on Vigil's observation, with RCAEval's main.py frame
conventions (phamquiluan/RCAEval, main.py: drop ``*_latency-50``, inf -> NaN, ffill, fill 0, the last
``20 * 60 // 2`` rows before the inject time and the first as many from it, ``*_latency-90`` ->
``*_latency``; ranked ``<service>_<metric>`` names -> services by the part before the first ``_``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vigil.agent.investigator import observe
from vigil.bench import peers as peers_mod
from vigil.bench import run_bench
from vigil.bench.peers import (
    GENERIC_DATASET,
    LENGTH_ROWS,
    Peer,
    PeerSpec,
    load_peers,
    main_py_frame,
    peer_frame,
    service_ranks,
    wide_frame,
)
from vigil.engine import Settings
from vigil.engine.observation import Observation
from vigil.errors import InputError
from vigil.ingest import discover
from vigil.ingest.rcaeval import metrics_file, read_inject_time
from vigil.store.telemetry import TelemetryStore

pytest.importorskip("RCAEval", reason='rcaeval is not installed (pip install -e ".[peers]")')

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ONSET = 1_700_000_000.0


def synthetic(faulty: str, rng_seed: int = 3) -> Observation:
    """Four services at 10 s for an hour before the alert and 5 minutes after; one of them ('faulty')
    jumps to full CPU and slows down at the alert. One name holds '_' (as PetShop's do)."""
    rng = np.random.default_rng(rng_seed)
    ts = np.arange(ONSET - 3600, ONSET + 300, 10.0)
    rows = []
    for svc in ("frontend", "cart", "orders_AWS::RDS", "payment"):
        for name, base, spread in (("cpu", 20.0, 2.0), ("mem", 3e8, 1e6), ("latency-50", 0.02, 0.002),
                                   ("latency-90", 0.05, 0.005)):
            v = base + spread * rng.standard_normal(len(ts))
            if svc == faulty and name in ("cpu", "latency-90"):
                v = np.where(ts >= ONSET, v * 4, v)
            rows.append(pd.DataFrame({"resource": svc, "name": name, "ts": ts, "value": v}))
    return Observation(onset=ONSET, metrics=pd.concat(rows, ignore_index=True))


@pytest.mark.parametrize("faulty", ["cart", "orders_AWS::RDS"])
@pytest.mark.parametrize("name", ["baro", "nsigma"])
def test_peer_ranks_the_obviously_faulty_service_first(name, faulty):
    (peer,) = load_peers([name])
    answer = peer.rank(synthetic(faulty))
    assert answer.error is None
    assert answer.services[0] == faulty
    assert set(answer.services) == {"frontend", "cart", "orders_AWS::RDS", "payment"}


def test_frame_follows_rcaeval_main_py():
    m = pd.DataFrame({
        "resource": ["a", "a", "b", "b", "a", "b", "b_x", "a"],
        "name": ["cpu", "cpu", "latency-90", "latency-50", "cpu", "latency-90", "mem", "cpu"],
        "ts": [1.0, 3.0, 2.0, 2.0, 4.0, 4.0, 3.0, 4.0],
        "value": [1.0, 2.0, np.inf, 9.0, 3.0, 5.0, 7.0, 30.0]})
    wide, aliases = wide_frame(m)
    # union of timestamps, sorted; a repeated (time, series) keeps its last value; missing stays NaN
    assert wide["time"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert list(wide.columns) == ["time", "a_cpu", "b_latency-90", "b_latency-50", "b~x_mem"]
    assert aliases == {"a": "a", "b": "b", "b~x": "b_x"}
    assert wide["a_cpu"].tolist()[2:] == [2.0, 30.0] and np.isnan(wide["a_cpu"][1])
    data = main_py_frame(wide, inject_time=3.0, length_rows=1)
    # latency-50 dropped, latency-90 renamed, inf -> NaN -> forward fill -> 0; one row per side
    assert list(data.columns) == ["time", "a_cpu", "b_latency", "b~x_mem"]
    assert data["time"].tolist() == [2.0, 3.0]
    assert data["a_cpu"].tolist() == [1.0, 2.0] and data["b_latency"].tolist() == [0.0, 0.0]
    assert data["b~x_mem"].tolist() == [0.0, 7.0]
    assert service_ranks(["b~x_mem", "a_cpu", "b~x_cpu", "b_latency"], aliases) == ["b_x", "a", "b"]


def test_frame_keeps_the_incident_window_only():
    obs = synthetic("cart")
    extra = obs.metrics.iloc[:4].assign(ts=ONSET + 86400.0)       # a day later: not the incident
    obs.metrics = pd.concat([obs.metrics, extra], ignore_index=True)
    data, _ = peer_frame(obs, Settings())
    assert data["time"].max() <= ONSET + Settings().after_s
    assert (data["time"] < ONSET).sum() == min(LENGTH_ROWS, 360) and (data["time"] >= ONSET).sum() == 30
    # a slow (5-minute) series keeps min_after_samples samples after the alert
    slow = pd.DataFrame({"resource": "s", "name": "cpu", "ts": ONSET + np.arange(-3, 4) * 300.0 + 20,
                         "value": 1.0})
    data, _ = peer_frame(Observation(onset=ONSET, metrics=slow), Settings())
    assert (data["time"] >= ONSET).sum() == 2
    # ...but a marked fault-free window months away (PetShop's noissue) stretches nothing
    far = slow.iloc[:5].assign(ts=ONSET + 1e7 + np.arange(5) * 300.0)
    data, _ = peer_frame(Observation(onset=ONSET, metrics=pd.concat([slow.iloc[:4], far])), Settings())
    assert data["time"].tolist() == (ONSET + np.arange(-3, 1) * 300.0 + 20).tolist()


def test_a_fault_free_run_recorded_apart_is_the_peers_before_part():
    """Nothing precedes the alert: the marked run (three days before) is re-timed to end just before it."""
    obs = synthetic("cart")
    t = obs.metrics["ts"].to_numpy()
    before = obs.metrics[t < ONSET].assign(ts=lambda d: d["ts"] - 3 * 86400.0)
    obs.metrics = pd.concat([before, obs.metrics[t >= ONSET]], ignore_index=True)
    obs.baselines = [(float(before["ts"].min()), float(before["ts"].max()))]
    data, _ = peer_frame(obs, Settings())
    assert (data["time"] < ONSET).sum() > 0 and data["time"].min() > ONSET - 86400
    assert data["time"][data["time"] < ONSET].max() < ONSET


def _raw_main_py(rec, obs, s):
    """rcaeval's main.py path on the case's own metrics file, cut to the adapter's time range."""
    from vigil.bench.peers import incident_metrics
    m = incident_metrics(obs, s)
    raw = pd.read_csv(metrics_file(rec.path))
    raw = raw[(raw["time"] >= m["ts"].min()) & (raw["time"] <= m["ts"].max())].sort_values("time", kind="stable")
    inject = int(read_inject_time(rec.path / "inject_time.txt"))
    return main_py_frame(raw, inject), inject


@pytest.mark.parametrize("name", ["baro", "nsigma"])
def test_adapter_gives_what_rcaeval_gives_on_the_case_file(name):
    """From Vigil's store, the adapter ranks exactly as rcaeval does on the RCAEval case file itself."""
    (peer,) = load_peers([name])
    s = Settings()
    recs = [r for r in discover([FIXTURES / "rcaeval"]) if metrics_file(r.path)]
    assert len(recs) == 4
    for rec in recs:
        st = TelemetryStore()
        with st.transaction() as w:
            rec.load(w, "s")
        obs = observe(st, "s", rec.cases[0].alert.at.timestamp(), rec.cases[0].alert, s)
        st.close()
        raw, inject = _raw_main_py(rec, obs, s)
        ours, _ = peer_frame(obs, s)
        assert ours.shape == raw.shape
        expected = service_ranks(peer.func(raw, inject, dataset=GENERIC_DATASET)["ranks"], {})
        assert peer.rank(obs).services == expected
        assert expected[0] == rec.cases[0].label.resource     # the fixtures' faults are obvious


def test_a_failing_peer_is_a_miss_with_its_error():
    def boom(*_a, **_k):
        raise ValueError("singular matrix")

    def swallowed(data, *_a, **_k):         # what rcaeval's @rca wrapper does when the method raises
        print("circa failed (LinAlgError: singular); returning the unranked column order", file=sys.stderr)
        return {"ranks": [c for c in data.columns if c != "time"]}

    spec = PeerSpec("x", "m", "f", "test")
    obs = synthetic("cart")
    a = Peer(spec, boom, Settings()).rank(obs)
    assert a.services == [] and a.error == "ValueError: singular matrix"
    b = Peer(spec, swallowed, Settings()).rank(obs)
    assert b.services == [] and "LinAlgError: singular" in b.error
    c = Peer(spec, swallowed, Settings()).rank(Observation(onset=ONSET))
    assert c.services == [] and "no metric" in c.error


def test_unknown_peer_and_missing_rcaeval_are_one_line_errors(monkeypatch):
    with pytest.raises(InputError, match="unknown peer bogus: choose from baro, nsigma"):
        load_peers(["baro", "bogus"])
    monkeypatch.setitem(sys.modules, "RCAEval.e2e.baro", None)       # as if rcaeval were not installed
    with pytest.raises(InputError, match=r'pip install -e "\.\[peers\]"'):
        load_peers(["baro"])


def test_bench_runs_peers_beside_vigil():
    rep = run_bench([FIXTURES / "rcaeval"], peers=["baro", "nsigma"])
    methods = {(r["dataset"], r["method"]) for r in rep.results}
    for ds in ("rcaeval/RE1-TT", "rcaeval/RE2-OB", "rcaeval/RE3-OB"):
        assert {(ds, "vigil"), (ds, "rcaeval-baro"), (ds, "rcaeval-nsigma")} <= methods
    peer_cases = [c for c in rep.cases if c["method"].startswith("rcaeval-")]
    assert len(peer_cases) == 2 * 4 and all(c["seconds"] > 0 for c in peer_cases)
    # every case with metrics is answered; the one with logs and traces only has no metric frame
    assert sum(bool(c["top5"]) for c in peer_cases) >= 2 * 3
    assert {s["dataset"] for s in rep.speed} == {"rcaeval/RE1-TT", "rcaeval/RE2-OB", "rcaeval/RE3-OB"}
    assert all(s["ratio"] > 0 for s in rep.speed)
    assert "speed_vs_rcaeval_baro" in json.loads(json.dumps(rep.contract(), default=str))


def test_peer_specs_name_real_rcaeval_functions():
    for spec in peers_mod.SPECS.values():
        (peer,) = load_peers([spec.name])
        assert callable(peer.func) and peer.func.__module__.startswith("RCAEval.")


def test_cli_bench_with_peers(tmp_path):
    from test_cli import one_line_error, vigil
    out = tmp_path / "bench.json"
    p = vigil("bench", str(FIXTURES / "rcaeval" / "RE2-OB"), "--peers", "baro,nsigma", "--json", str(out),
              home=tmp_path / "h")
    assert p.returncode == 0, p.stderr
    assert "| rcaeval/RE2-OB | rcaeval-baro | 2 |" in p.stdout and "rcaeval-baro median s" in p.stdout
    data = json.loads(out.read_text())
    assert {r["method"] for r in data["results"]} >= {"vigil", "rcaeval-baro", "rcaeval-nsigma"}
    assert data["speed_vs_rcaeval_baro"][0]["dataset"] == "rcaeval/RE2-OB"
    msg = one_line_error(vigil("bench", str(FIXTURES / "rcaeval"), "--peers", "baro,circa", home=tmp_path / "h"))
    assert "unknown peer circa" in msg


def test_vigil_beats_rcaevals_baro_on_petshop(datasets):
    """PetShop (34 cases, 5-minute metrics): rcaeval's BARO on the same observations is well behind."""
    rep = run_bench([datasets / "petshop"], peers=["baro"])
    ac1 = {(r["dataset"], r["method"]): r["ac@1"] for r in rep.results}
    cases = {(r["dataset"], r["method"]): r["cases"] for r in rep.results}
    for ds in ("petshop/low_traffic", "petshop/temporal_traffic1"):
        assert cases[(ds, "vigil")] == cases[(ds, "rcaeval-baro")] > 0
        assert ac1[(ds, "vigil")] > ac1[(ds, "rcaeval-baro")]
    assert not [c for c in rep.cases if c.get("error")]
