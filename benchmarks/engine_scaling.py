"""How the engine's time grows with the number of services and the window length.

Usage: python benchmarks/engine_scaling.py [../shared/datasets/nezha] [--cases N]

Uses the real Nezha Train-Ticket recording. Service count is grown by replaying several copies of
the same observation side by side under renamed services (copies do not call each other), which
is what replaying several cases at once looks like to the engine. Window length is grown by
widening the metric history and the event window. Prints a table per dimension: median and max
seconds per case (stored telemetry -> ranked answer, including the queries) and peak memory."""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from vigil.agent.investigator import observe
from vigil.engine import Observation, Settings, analyze
from vigil.ingest import discover
from vigil.model import Edge, Resource, Topology
from vigil.store.telemetry import TelemetryStore


def replicate(obs: Observation, k: int) -> Observation:
    if k == 1:
        return obs
    def copies(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
        parts = []
        for i in range(k):
            d = df.copy()
            for c in cols:
                d[c] = d[c].astype(str) + (f"#{i}" if i else "")
            parts.append(d)
        return pd.concat(parts, ignore_index=True)
    topo = Topology(
        resources=[Resource(name=r.name + (f"#{i}" if i else ""), kind=r.kind) for i in range(k)
                   for r in obs.topology.resources],
        edges=[Edge(src=e.src + (f"#{i}" if i else ""), dst=e.dst + (f"#{i}" if i else ""), kind=e.kind,
                    source=e.source) for i in range(k) for e in obs.topology.edges])
    return dataclasses.replace(
        obs, metrics=copies(obs.metrics, ["resource"]), logs=copies(obs.logs, ["resource", "trace_id", "span_id"]),
        spans=copies(obs.spans, ["resource", "trace_id", "span_id", "parent_id"]), topology=topo)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/nezha"))
    ap.add_argument("--cases", type=int, default=6)
    args = ap.parse_args()
    rec = next(r for r in discover([Path(args.path)]) if "trainticket" in r.dataset)
    store = TelemetryStore()
    with store.transaction() as w:
        rec.load(w, "tt")
    cases = rec.cases[:: max(1, len(rec.cases) // args.cases)][: args.cases]
    n_services = len({r.name for r in store.topology("tt").resources})
    print(f"recording {rec.dataset}: {n_services} services, {len(cases)} cases per point\n")

    print("| copies | services | metric series | log lines | spans | median s | max s | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    base = Settings()
    for k in (1, 2, 4, 8):
        times, sizes = [], None
        for c in cases:
            obs = observe(store, "tt", c.alert.at.timestamp(), c.alert, base)
            obs = replicate(obs, k)
            t0 = time.perf_counter()
            analyze(obs, base)
            times.append(time.perf_counter() - t0)
            sizes = (obs.metrics.groupby(["resource", "name"]).ngroups, len(obs.logs), len(obs.spans))
        print(f"| {k} | {n_services * k} | {sizes[0]} | {sizes[1]} | {sizes[2]} | {statistics.median(times):.3f} "
              f"| {max(times):.3f} | {peak_mb():.0f} |", flush=True)

    print("\n| metric history min | event window s | metric points | median s | max s | peak MB |")
    print("|---|---|---|---|---|---|")
    for hist, after in ((15, 60), (30, 120), (60, 300), (120, 300), (240, 300), (480, 300)):
        s = dataclasses.replace(base, metric_lookback_s=hist * 60.0, after_s=float(after))
        times, pts = [], 0
        for c in cases:
            t0 = time.perf_counter()
            obs = observe(store, "tt", c.alert.at.timestamp(), c.alert, s)
            analyze(obs, s)
            times.append(time.perf_counter() - t0)
            pts = len(obs.metrics)
        print(f"| {hist} | {after} | {pts} | {statistics.median(times):.3f} | {max(times):.3f} | {peak_mb():.0f} |",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
