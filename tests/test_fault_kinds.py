"""Fault kinds from the strongest evidence: memory that grows after the CPU moved, a load surge that
explains nothing, packet loss against delay and against a slow process, a one-call reference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vigil.engine import Observation, analyze
from vigil.engine.analyzers.growth import Growth
from vigil.engine.prepared import Prepared
from vigil.model import Edge, FaultKind, Resource, Topology

ONSET = 1_700_000_000.0


def series(resource, name, values, step=5.0, start=ONSET - 600):
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"resource": resource, "name": name, "ts": start + step * np.arange(len(values)),
                         "value": values})


def topo(*edges):
    names = sorted({n for e in edges for n in e})
    return Topology(resources=[Resource(name=n) for n in names], edges=[Edge(src=a, dst=b) for a, b in edges])


# -- memory growth and CPU ---------------------------------------------------------------------------
N = 240                         # 5 s samples: 10 minutes before the onset, 10 after
AT = 120                        # the onset's sample


def stressed(rng, mem_fold: float):
    """cart's CPU jumps 30-fold 10 s after the onset and its memory by ``mem_fold`` 60 s later (a memory
    stressor burns CPU first); web and db stay quiet."""
    parts = []
    for s in ("web", "cart", "db"):
        cpu = 0.02 * np.exp(rng.normal(0, 0.05, N))
        mem = 180 * np.exp(rng.normal(0, 0.005, N))
        if s == "cart":
            cpu[AT + 2:] *= 30
            mem[AT + 12:] *= mem_fold
        parts += [series(s, "cpu", cpu), series(s, "mem", mem)]
    return Observation(onset=ONSET, metrics=pd.concat(parts), topology=topo(("web", "cart"), ("cart", "db")))


def test_memory_that_triples_after_the_cpu_moved_is_memory():
    top = analyze(stressed(np.random.default_rng(1), 5.0)).hypotheses[0]
    assert top.resource == "cart" and top.fault_kind is FaultKind.MEMORY, (top.fault_kind, top.why)


def test_memory_that_doubles_as_a_replica_is_added_leaves_the_cpu_reading():
    top = analyze(stressed(np.random.default_rng(2), 2.0)).hypotheses[0]
    assert top.resource == "cart" and top.fault_kind is FaultKind.CPU, (top.fault_kind, top.why)


def test_a_load_surge_that_moves_every_workload_is_no_one_s_cpu_growth():
    rng = np.random.default_rng(3)
    parts = []
    for i, s in enumerate(("web", "cart", "db", "auth", "mail")):
        cpu = 0.001 * np.exp(rng.normal(0, 0.05, N))
        cpu[AT + 2:] *= 40 + 10 * i            # load arrives everywhere at the onset
        parts.append(series(s, "cpu", cpu))
    p = Prepared(Observation(onset=ONSET, metrics=pd.concat(parts)))
    grown = {f.resource: f.detail.d for f in Growth().analyze(p, Growth.Config())}
    assert all(d < np.log(2) for d in grown.values()), grown
    # a workload whose CPU rose far beyond the others' does stand out
    cpu = 0.001 * np.exp(rng.normal(0, 0.05, N))
    cpu[AT + 2:] *= 2000
    p = Prepared(Observation(onset=ONSET, metrics=pd.concat([*parts, series("hog", "cpu", cpu)])))
    grown = {f.resource: f.detail.d for f in Growth().analyze(p, Growth.Config())}
    assert grown["hog"] > np.log(10), grown


def slowed_orders(rng, cpu_fold: float):
    """orders' latency rises tenfold at the onset; its CPU by ``cpu_fold`` 40 s later (late in the first
    minute, which the local family's median reads as unchanged)."""
    parts = []
    for s in ("web", "orders", "db", "mail"):
        cpu = 0.2 * np.exp(rng.normal(0, 0.03, N))
        lat = 50 * np.exp(rng.normal(0, 0.03, N))
        if s == "orders":
            lat[AT + 1:] *= 10
            cpu[AT + 8:] *= cpu_fold
        parts += [series(s, "cpu", cpu), series(s, "server_latency_ms", lat)]
    return Observation(onset=ONSET, metrics=pd.concat(parts), topology=topo(("web", "orders"), ("orders", "db")))


def test_a_slowdown_with_the_cpu_doubled_is_the_cpu_and_without_it_latency():
    top = analyze(slowed_orders(np.random.default_rng(4), 3.0)).hypotheses[0]
    assert top.resource == "orders" and top.fault_kind is FaultKind.CPU, (top.fault_kind, top.why)
    top = analyze(slowed_orders(np.random.default_rng(4), 1.5)).hypotheses[0]
    assert top.resource == "orders" and top.fault_kind is FaultKind.LATENCY, (top.fault_kind, top.why)


# -- network delay, packet loss, a slow process: from spans -------------------------------------------
def traced(extra_gap, extra_own=None, first=-1800.0, every=10.0):
    """web calls api, api calls db (client span on api, server span on db) every ``every`` seconds.
    ``extra_gap(i, t)``: ms added between api's client span and db's server span (the network);
    ``extra_own(i, t)``: ms added to db's own time."""
    rows = []
    for i, t0 in enumerate(np.arange(first, 300.0, every)):
        t = ONSET + t0
        net = extra_gap(i, t0) if t0 >= 0 else 0.0
        own = (extra_own(i, t0) if extra_own and t0 >= 0 else 0.0)
        db = 5.0 + (i % 3) * 0.5 + own
        client = db + 1.0 + net
        api = client + 3.0
        web = api + 2.0
        tid = f"t{i}"
        rows += [
            {"trace_id": tid, "span_id": f"{tid}a", "parent_id": None, "resource": "web", "operation": "GET /",
             "start": t, "duration_ms": web, "error": False},
            {"trace_id": tid, "span_id": f"{tid}b", "parent_id": f"{tid}a", "resource": "api", "operation": "handle",
             "start": t + 0.001, "duration_ms": api, "error": False},
            {"trace_id": tid, "span_id": f"{tid}c", "parent_id": f"{tid}b", "resource": "api", "operation": "db.query",
             "start": t + 0.002, "duration_ms": client, "error": False},
            {"trace_id": tid, "span_id": f"{tid}d", "parent_id": f"{tid}c", "resource": "db", "operation": "query",
             "start": t + 0.002 + net / 2000.0, "duration_ms": db, "error": False},
        ]
    return Observation(onset=ONSET, spans=pd.DataFrame(rows), topology=topo(("web", "api"), ("api", "db")))


def kind_of(obs, resource):
    a = analyze(obs)
    h = next(h for h in a.hypotheses if h.resource == resource)
    return h.fault_kind, h.why, [x.resource for x in a.hypotheses[:3]]


def test_every_call_slowed_by_a_like_amount_between_caller_and_callee_is_a_delay():
    kind, why, top = kind_of(traced(lambda i, t: 2000.0 + (i % 2) * 300), "db")
    assert kind is FaultKind.NETWORK_DELAY and "db" in top[:2], (kind, why, top)


def test_a_share_of_calls_held_up_by_retransmission_waits_is_packet_loss():
    waits = (3000.0, 0.0, 0.0, 3100.0, 0.0, 0.0)          # a third of the calls wait one timeout
    kind, why, top = kind_of(traced(lambda i, t: waits[i % len(waits)]), "db")
    assert kind is FaultKind.NETWORK_LOSS and "db" in top[:2], (kind, why, top)


def test_own_time_slowed_for_every_call_is_latency_and_in_scattered_waits_is_loss():
    kind, why, _ = kind_of(traced(lambda i, t: 0.0, lambda i, t: 400.0 + (i % 2) * 20), "db")
    assert kind is FaultKind.LATENCY, (kind, why)
    waits = (0.0, 9000.0, 600000.0, 700.0)                # most calls wait, for very different times
    kind, why, _ = kind_of(traced(lambda i, t: 0.0, lambda i, t: waits[i % len(waits)]), "db")
    assert kind is FaultKind.NETWORK_LOSS, (kind, why)


def test_one_call_before_the_onset_is_reference_enough_for_a_thousandfold_delay():
    """The recording starts a minute before the fault and the edge is called every 90 s: one reference
    call. A thousandfold slower network on every later call is still named."""
    kind, why, top = kind_of(traced(lambda i, t: 10000.0, first=-60.0, every=90.0), "db")
    assert kind is FaultKind.NETWORK_DELAY and "db" in top[:2], (kind, why, top)
