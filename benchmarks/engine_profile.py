"""Where the engine's time goes, case by case, on the recorded datasets: fetching the observation, then
each analyzer (a ``Prepared`` part an analyzer is the first to ask for is counted in that analyzer).

Usage: python benchmarks/engine_profile.py [PATH ...] [--only SUBSTR] [--every K] [--cases N]
                                           [--profile] [--json OUT] [--peers baro]

Runs ``observe`` + ``analyze`` on every K-th labeled case (at most N per recording) of every recording
found, the way ``vigil bench`` does, and prints one Markdown table: per dataset, the median seconds per
case of each part (the process's CPU seconds, less sensitive to other work on a shared machine;
``--clock wall`` for wall-clock seconds), the wall-clock total and the CPU total (the load average at
the start and the end is printed too). ``--peers baro`` adds
rcaeval's BARO, in CPU seconds with the observation's CPU seconds included (as ``vigil bench`` times it). ``--json`` writes every
case's whole ranking (resource, fault kind, confidence, score, why, a digest of its evidence), which
``benchmarks/compare_rankings.py`` compares between two runs (speed work must leave it identical).
``--profile`` adds a cProfile of the analysis (top functions by own time)."""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from vigil.agent.investigator import observe
from vigil.engine import Settings, analyze
from vigil.errors import InputError
from vigil.ingest import discover
from vigil.store.telemetry import TelemetryStore

DEFAULT = Path(__file__).resolve().parents[2] / "shared/datasets"


def group_of(dataset: str) -> str:
    return dataset


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="*", default=[str(DEFAULT)])
    ap.add_argument("--only", action="append", default=[], help="keep recordings whose dataset contains this")
    ap.add_argument("--every", type=int, default=1, help="every K-th labeled case of a recording")
    ap.add_argument("--cases", type=int, default=0, help="at most this many cases per recording (0: all)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="the parts' seconds: the process's CPU time (default) or wall-clock time")
    ap.add_argument("--peers", default="", help="also time these rcaeval peers (observation included), e.g. baro")
    args = ap.parse_args()
    settings = Settings()
    if args.clock == "cpu":      # the engine times each analyzer with time.perf_counter: give it CPU time
        import types

        import vigil.engine.ranking as ranking
        ranking.time = types.SimpleNamespace(perf_counter=time.process_time)
    from vigil.bench.peers import load_peers
    peers = load_peers([n for n in args.peers.split(",") if n], settings) if args.peers else []
    recs = [r for r in discover([Path(p) for p in args.paths]) if any(c.label for c in r.cases)]
    if args.only:
        recs = [r for r in recs if any(o in f"{r.dataset}/{r.name}" for o in args.only)]
    load0 = os.getloadavg()[0]
    prof = cProfile.Profile() if args.profile else None
    rows: dict[str, list[dict]] = defaultdict(list)
    rankings: dict[str, list] = {}
    t_all = time.perf_counter()
    for rec in recs:
        store = TelemetryStore(":memory:")
        with store.transaction() as w:
            rec.load(w, "p")
        cases = [c for c in rec.cases if c.label][:: max(1, args.every)]
        if args.cases:
            cases = cases[: args.cases]
        for c in cases:
            onset = c.alert.at.timestamp()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                obs = observe(store, "p", onset, c.alert, settings)
            except InputError:
                continue
            t1, c1 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            a = analyze(obs, settings)
            if prof:
                prof.disable()
            t2 = time.perf_counter()
            row = {"observe": (t1 - t0) if args.clock == "wall" else (c1 - c0)}
            for name, _, data in a.notes:
                if "seconds" in data:
                    row[name] = row.get(name, 0.0) + data["seconds"]
            row |= {"analyze": t2 - t1, "total": t2 - t0, "cpu": time.process_time() - c0, "observe cpu": c1 - c0}
            for peer in peers:          # CPU seconds, fetching the observation included (as vigil bench times them)
                c2 = time.process_time()
                peer.rank(obs)
                row[peer.method] = time.process_time() - c2 + row["observe cpu"]
            rows[group_of(c.dataset)].append(row)
            rankings[f"{c.dataset}/{c.id}"] = [
                [h.resource, h.fault_kind.value, h.confidence, h.score, h.why,
                 hashlib.sha1(json.dumps([e.model_dump(mode="json") for e in h.evidence], sort_keys=True,
                                         default=str).encode()).hexdigest()[:12]] for h in a.hypotheses]
        store.close()
    total = time.perf_counter() - t_all
    load1 = os.getloadavg()[0]
    names = list(dict.fromkeys(k for rs in rows.values() for r in rs for k in r
                               if k not in ("observe", "analyze", "total", "cpu", "observe cpu")
                               and k not in {p.method for p in peers}))
    cols = ["observe", *names, "analyze", "total", "cpu"]
    print(f"load average {load0:.1f} at start, {load1:.1f} at end; {total:.1f} s in all; "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n")
    cols += [p.method + " cpu" for p in peers]
    print("| dataset | cases | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for ds, rs in sorted(rows.items()):
        med = [statistics.median(r.get(k.removesuffix(" cpu"), 0.0) for r in rs) for k in cols]
        print(f"| {ds} | {len(rs)} | " + " | ".join(f"{v:.3f}" for v in med) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rankings, indent=0))
    if prof:
        print()
        pstats.Stats(prof).sort_stats("tottime").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
