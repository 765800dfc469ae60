"""Engine v2 mechanisms on synthetic observations: each test isolates one and fails without it."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from vigil.bench.harness import ABLATIONS, CaseResult, ablate, held_out_confidences, reliability, reshape
from vigil.engine import Observation, Settings, analyze
from vigil.engine.analyzers.resources import Resources
from vigil.engine.confidence import Calibration, confidences, fit_calibration, top_features
from vigil.engine.prepared import Prepared
from vigil.errors import InputError
from vigil.model import Alert, Edge, FaultKind, Resource, Topology

ONSET = 1_700_000_000.0


def series(resource, name, values, step=60.0, start=ONSET - 3600):
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"resource": resource, "name": name, "ts": start + step * np.arange(len(values)),
                         "value": values})


def noise(rng, level, n=75, sd=1.0):
    return level + rng.normal(0, sd, n)


def topo(*edges):
    names = sorted({n for e in edges for n in e})
    return Topology(resources=[Resource(name=n) for n in names], edges=[Edge(src=a, dst=b) for a, b in edges])


def quiet_system(rng, n=75, skip=()):
    """Three services reporting CPU and memory every minute, the onset at sample 60."""
    return [series(s, m, noise(rng, lvl, n)) for s in ("web", "cart", "db") if s not in skip
            for m, lvl in (("cpu_usage", 20), ("memory_usage", 50))]


# -- resources: stopped, leaking, restarting ------------------------------------------------------
def test_a_workload_that_stops_reporting_is_a_pod_failure():
    rng = np.random.default_rng(1)
    parts = quiet_system(rng, skip=("cart",))
    parts += [series("cart", m, noise(rng, lvl, 61)) for m, lvl in (("cpu_usage", 20), ("memory_usage", 50))]
    a = analyze(Observation(onset=ONSET, metrics=pd.concat(parts), topology=topo(("web", "cart"), ("cart", "db"))))
    top = a.hypotheses[0]
    assert top.resource == "cart" and top.fault_kind is FaultKind.POD_FAILURE, a.summary


def test_a_series_that_ends_with_the_recording_is_not_a_stop():
    rng = np.random.default_rng(2)
    parts = [series(s, m, noise(rng, lvl, 62)) for s in ("web", "cart", "db")
             for m, lvl in (("cpu_usage", 20), ("memory_usage", 50))]
    got = Resources().analyze(Prepared(Observation(onset=ONSET, metrics=pd.concat(parts))), Resources.Config())
    assert not [f for f in got if f.hypothesis == "local:stopped"]


def test_a_steady_memory_climb_is_a_leak_and_a_step_is_not():
    rng = np.random.default_rng(3)
    mem = noise(rng, 50, 75, 0.3)
    mem[60:] = 50 + np.arange(15) * 2.0 + rng.normal(0, 0.3, 15)     # +2 per minute after the onset
    step = noise(rng, 50, 75, 0.3)
    step[60:] += 30
    obs = Observation(onset=ONSET, metrics=pd.concat([series("cart", "memory_usage", mem),
                                                       series("db", "memory_usage", step),
                                                       series("web", "memory_usage", noise(rng, 50, 75, 0.3))]))
    leaks = {f.resource for f in Resources().analyze(Prepared(obs), Resources.Config()) if f.hypothesis == "local:leak"}
    assert leaks == {"cart"}
    a = analyze(Observation(onset=ONSET, metrics=pd.concat([series("cart", "memory_usage", mem),
                                                            *quiet_system(rng, skip=("cart",))]),
                            topology=topo(("web", "cart"), ("cart", "db"))))
    assert a.hypotheses[0].resource == "cart" and a.hypotheses[0].fault_kind is FaultKind.MEMORY


def test_an_oom_kill_counter_points_at_memory():
    rng = np.random.default_rng(4)
    oom = np.zeros(75)
    oom[62:] = 1
    obs = Observation(onset=ONSET, metrics=pd.concat([*quiet_system(rng), series("cart", "oom_kills_total", oom)]))
    got = [f for f in Resources().analyze(Prepared(obs), Resources.Config()) if f.hypothesis == "local:restarts"]
    assert [(f.resource, f.fault_kind) for f in got] == [("cart", FaultKind.MEMORY)]


# -- fault kinds --------------------------------------------------------------------------------
def test_a_severe_slowdown_is_latency_whatever_log_line_comes_with_it():
    """A backend made 100x slower logs a new warning; what to act on is the slowdown."""
    rng = np.random.default_rng(5)
    lat = noise(rng, 130, 75, 5)
    lat[60:] = 14500 + rng.normal(0, 300, 15)
    logs = []
    for i in range(75):
        t = ONSET - 3600 + 60 * i
        logs += [{"ts": t + k, "resource": "orders", "body": f"handled request id={k}", "severity": "INFO"} for k in range(5)]
        if i >= 60:
            logs.append({"ts": t + 30, "resource": "orders", "body": "stock value mismatch for item, using stale value",
                         "severity": "WARN"})
    obs = Observation(onset=ONSET, metrics=pd.concat([series("orders", "server_latency_ms", lat),
                                                      series("web", "cpu_usage", noise(rng, 20)),
                                                      series("orders", "cpu_usage", noise(rng, 20))]),
                      logs=pd.DataFrame(logs), topology=topo(("web", "orders")))
    top = analyze(obs).hypotheses[0]
    assert top.resource == "orders" and top.fault_kind is FaultKind.LATENCY, (top.fault_kind, top.why)


# -- references anywhere in time; never empty ------------------------------------------------------
def test_a_fault_free_run_recorded_days_before_is_the_reference():
    """Nothing precedes the alert: the only reference is a run marked fault-free three days before."""
    rng = np.random.default_rng(6)
    gap = 3 * 86400
    normal = [series(s, "cpu_usage", noise(rng, 20, 300, 0.5), step=1.0, start=ONSET - gap) for s in ("a", "b", "c")]
    hog = noise(rng, 20, 120, 0.5)
    hog[:] += 50
    incident = [series("b", "cpu_usage", hog, step=1.0, start=ONSET)] + \
        [series(s, "cpu_usage", noise(rng, 20, 120, 0.5), step=1.0, start=ONSET) for s in ("a", "c")]
    obs = Observation(onset=ONSET, metrics=pd.concat(normal + incident), baselines=[(ONSET - gap, ONSET - gap + 300)])
    a = analyze(obs)
    assert a.hypotheses and a.hypotheses[0].resource == "b" and a.hypotheses[0].fault_kind is FaultKind.CPU


def test_with_no_reference_at_all_the_ranking_is_still_not_empty():
    rng = np.random.default_rng(7)
    b = noise(rng, 20, 120, 0.5)
    b[30:] += 50
    m = pd.concat([series("b", "cpu_usage", b, step=1.0, start=ONSET)] +
                  [series(s, "cpu_usage", noise(rng, 20, 120, 0.5), step=1.0, start=ONSET) for s in ("a", "c")])
    a = analyze(Observation(onset=ONSET, metrics=m))
    assert a.hypotheses and a.hypotheses[0].resource == "b"
    assert any(name == "deviation" for name, _, _ in a.notes)


def test_analyzers_that_cannot_run_say_why_in_the_notes():
    rng = np.random.default_rng(8)
    a = analyze(Observation(onset=ONSET, metrics=pd.concat(quiet_system(rng))))
    skipped = {name: data["skipped"] for name, _, data in a.notes if data.get("skipped")}
    assert "patterns" in skipped and "logs" in " ".join(skipped.values()) + skipped.get("logs", "logs")


# -- confidence ---------------------------------------------------------------------------------
def test_the_top1_has_the_highest_confidence_and_confidence_falls_with_rank():
    s = Settings()
    for scores in ([0.61, 0.60, 0.2], [0.3, 0.29, 0.28, 0.27], [0.9, 0.1], [0.05, 0.049, 0.01]):
        c = confidences(scores, s)
        assert c[0] == max(c) and all(x >= y - 1e-12 for x, y in zip(c, c[1:], strict=False)), (scores, c)
        assert all(0.0 <= x <= 1.0 for x in c)


def test_calibration_fit_recovers_a_known_relation():
    rng = np.random.default_rng(9)
    true = Calibration(-3.0, 2.0, 6.0, 0.0)
    feats, hits, groups = [], [], []
    for g in ("a", "b", "c"):
        for _ in range(400):
            s1 = rng.uniform(0.1, 1.0)
            s2 = s1 * rng.uniform(0.0, 1.0)
            f = top_features([s1, s2])
            feats.append(f)
            hits.append(rng.uniform() < true.probability(f))
            groups.append(g)
    got = fit_calibration(feats, hits, groups, l2=0.0)
    for f in ([0.9, 0.1], [0.5, 0.45], [0.3, 0.0]):
        assert abs(got.probability(top_features(f)) - true.probability(top_features(f))) < 0.08


def test_held_out_confidence_comes_from_the_other_recordings():
    def case(ds, hit, f):
        return CaseResult(case="c", dataset=ds, method="vigil", fault="-", truth="x", ranks=["x" if hit else "y"],
                          seconds=0.1, features=list(f))
    rows = [case("a", True, (0.9, 0.8, 0.1))] * 20 + [case("a", False, (0.2, 0.01, 0.95))] * 20 + \
           [case("b", True, (0.9, 0.8, 0.1))] * 20 + [case("b", False, (0.2, 0.01, 0.95))] * 20
    conf = held_out_confidences(rows)
    assert min(conf[:20]) > 0.7 and max(conf[20:40]) < 0.3
    table = reliability(rows, conf)
    assert table[-1]["confidence"] == ">= 0.9" and sum(r["cases"] for r in table[:5]) == len(rows)


# -- benchmark ablations and reshaping ----------------------------------------------------------
def test_ablations_take_away_exactly_their_signal():
    rng = np.random.default_rng(10)
    spans = pd.DataFrame({"trace_id": ["t"], "span_id": ["s"], "parent_id": [""], "resource": ["web"],
                          "operation": ["GET"], "start": [ONSET], "duration_ms": [1.0], "error": [False]})
    logs = pd.DataFrame({"ts": [ONSET], "resource": ["web"], "body": ["x"], "severity": ["INFO"]})
    obs = Observation(onset=ONSET, metrics=pd.concat(quiet_system(rng)), spans=spans, logs=logs,
                      topology=topo(("web", "cart")))
    got = {n: ablate(obs, n) for n in ABLATIONS}
    assert got["metrics-only"].spans.empty and got["metrics-only"].logs.empty and not got["metrics-only"].topology.edges
    assert len(got["no-traces"].logs) == 1 and got["no-traces"].spans.empty and got["no-traces"].topology.edges
    assert got["no-logs"].logs.empty and len(got["no-logs"].spans) == 1
    assert not got["no-topology"].topology.edges and len(got["no-topology"].spans) == 1
    assert len(obs.spans) == 1 and obs.topology.edges            # the input is untouched
    with pytest.raises(InputError):
        ablate(obs, "no-metrics")


def test_reshape_moves_the_past_into_a_marked_run_days_before():
    rng = np.random.default_rng(11)
    obs = Observation(onset=ONSET, metrics=pd.concat(quiet_system(rng)))
    r = reshape(obs, reference_gap_s=2 * 86400, horizon_s=300)
    t = r.metrics["ts"].to_numpy()
    assert not ((t < ONSET) & (t > ONSET - 86400)).any() and t.max() <= ONSET + 300
    (a, b), = r.baselines
    # the last minute before the alert (where a late alert's fault has often begun) is dropped, the rest moved
    assert b < ONSET - 86400 and ((t >= a) & (t <= b)).sum() == (obs.metrics["ts"] < ONSET - 60).sum()
    assert len(r.metrics) == (obs.metrics["ts"] < ONSET - 60).sum() + (obs.metrics["ts"].between(ONSET, ONSET + 300)).sum()


def test_reshape_keeps_a_recording_s_own_fault_free_runs():
    """Marked runs the recording already has (months apart, or an operator's window within the hour)
    stay where they are; only the unmarked past before the alert moves."""
    rng = np.random.default_rng(12)
    months = 90 * 86400
    own = [series(s, m, noise(rng, lvl, 30), start=ONSET - months) for s in ("web", "cart", "db")
           for m, lvl in (("cpu_usage", 20), ("memory_usage", 50))]
    marked = [(ONSET - months, ONSET - months + 1800), (ONSET - 3600, ONSET - 1800)]
    obs = Observation(onset=ONSET, metrics=pd.concat([*own, *quiet_system(rng)]), baselines=marked)
    r = reshape(obs, reference_gap_s=2 * 86400)
    assert r.baselines[:2] == marked and len(r.baselines) == 3
    t = r.metrics["ts"].to_numpy()
    for a, b in marked:
        assert ((t >= a) & (t <= b)).sum() == ((obs.metrics["ts"] >= a) & (obs.metrics["ts"] <= b)).sum() > 0
    assert not ((t > ONSET - 1800) & (t < ONSET)).any()


def petshop_like(rng, before_start):
    """web -> api -> db with request counts and mean latency every 5 minutes (CloudWatch style); two
    buckets of history starting at ``before_start``, three from 100 s after the onset (the onset falls
    between buckets), db's latency up fivefold."""
    parts = []
    for node, lat in (("web", 120.0), ("api", 60.0), ("db", 20.0)):
        for start, n, up in ((before_start, 2, 1.0), (ONSET + 100, 3, 5.0 if node == "db" else 1.0)):
            slow = lat * up + (80.0 if node != "db" and start > ONSET else 0.0)     # callers wait for db
            parts += [series(node, "requests:Sum", rng.normal(600, 10, n), step=300.0, start=start),
                      series(node, "latency:Average", slow * np.exp(rng.normal(0, 0.02, n)), step=300.0, start=start)]
    return parts


def test_a_short_fault_free_run_apart_is_still_the_reference_for_every_family():
    """Two 5-minute buckets recorded three days before and nothing before the alert (PetShop's shape
    re-timed): the request-excess and deviation families read the marked run, so the answer is not empty."""
    rng = np.random.default_rng(13)
    gap = 3 * 86400
    obs = Observation(onset=ONSET, metrics=pd.concat(petshop_like(rng, ONSET - gap)),
                      baselines=[(ONSET - gap, ONSET - gap + 600)], topology=topo(("web", "api"), ("api", "db")),
                      alert=Alert(id="a", title="web latency", at=datetime.fromtimestamp(ONSET, UTC),
                                  resource="web", metric="latency:Average"))
    a = analyze(obs)
    assert a.hypotheses and a.hypotheses[0].resource == "db", a.summary
    assert max((f for f in a.findings if f.family == "excess"), key=lambda f: f.score).resource == "db"
    # deviation reads every series against the two marked buckets: the nodes that moved, not the one that did not
    dev = {f.resource: f.score for f in a.findings if f.family == "deviation"}
    assert dev.get("db", 0) >= 3 and dev.get("web", 0) >= 3, dev
    # a marked run of a few samples is a series' reference when nothing precedes the onset
    ts = ONSET - gap + 300.0 * np.arange(4)
    p = Prepared(Observation(onset=ONSET, metrics=pd.DataFrame({"resource": "db", "name": "x", "ts": ts, "value": 1.0}),
                             baselines=[(ONSET - gap, ONSET - gap + 1000)]))
    assert [kind for _, kind in p.references(ts, 1800)] == ["marked"]


def test_a_truth_tied_for_first_place_counts_as_a_share_of_a_hit():
    def row(ranks, scores):
        return CaseResult(case="c", dataset="d", method="vigil", fault="-", truth="b", ranks=ranks, seconds=0.1,
                          scores=scores)
    assert row(["a", "b", "c"], [0.5, 0.5, 0.5]).hit(1) == pytest.approx(1 / 3)
    assert row(["b", "a", "c"], [0.5, 0.5, 0.1]).hit(1) == 0.5 and row(["b", "a", "c"], [0.5, 0.5, 0.1]).hit(2) == 1.0
    assert row(["b", "a"], [0.6, 0.5]).hit(1) == 1.0 and row(["a", "b"], [0.6, 0.5]).hit(1) == 0.0
    assert row(["a", "c"], [0.6, 0.5]).hit(5) == 0.0
