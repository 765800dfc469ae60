"""How the answers hold up when the alert time is off the fault's onset, and whether the confidence
means something when answers go wrong.

Usage: python benchmarks/robustness.py [PATH ...] [--offsets -120,-60,0,60,120,300]

Runs the development benchmark once per alert offset (every alert moved by that many seconds; late
alerts are positive, as when an alert rule needs a few evaluation periods). A real alert is rarely
on the onset, and an engine that is always right on the exact onset cannot show whether its
confidence is calibrated. Prints top-1 accuracy per recording and offset (beside rcaeval's own BARO
on the same observations when the peers extra is installed), and one calibration table over every
case of every offset: how often a top-1 at each confidence was right."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from vigil.bench import run_bench
from vigil.bench.harness import CONFIDENCE_BINS
from vigil.bench.peers import load_peers
from vigil.errors import InputError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, default=[Path("../shared/datasets")])
    ap.add_argument("--offsets", default="-120,-60,0,60,120,300",
                    help="alert offsets in seconds, comma-separated (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        offsets = [float(x) for x in args.offsets.split(",") if x.strip()]
    except ValueError:
        print(f"error: --offsets must be numbers separated by commas, not {args.offsets!r}", file=sys.stderr)
        return 2
    try:
        load_peers(["baro"])
        peers = ["baro"]
    except InputError as exc:
        peers = []
        print(f"note: {exc}; the BARO column stays empty", file=sys.stderr)
    rows, cases = [], []
    for off in offsets:
        rep = run_bench(args.paths, alert_offset_s=off, peers=peers)
        for r in rep.results:
            if r["method"] != "vigil":
                continue
            sel = [c for c in rep.cases if c["dataset"] == r["dataset"] and c["method"] == "vigil"]
            rows.append({"offset": off, "dataset": r["dataset"], "ac@1": r["ac@1"], "ac@3": r["ac@3"],
                         "kind": r["fault_kind_accuracy"],
                         "inconclusive": sum(bool(c["inconclusive"]) for c in sel) / len(sel),
                         "conf": statistics.median(c["confidence"] or 0.0 for c in sel),
                         "baro": next((b["ac@1"] for b in rep.results
                                       if b["dataset"] == r["dataset"] and b["method"] == "rcaeval-baro"), None)})
        cases += [c for c in rep.cases if c["method"] == "vigil"]
        print(f"offset {off:+.0f} s done", file=sys.stderr)

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    print("\nTop-1 by alert offset (seconds; late alerts are positive)\n")
    print("| offset s | dataset | AC@1 | AC@3 | fault kind | inconclusive | median confidence | rcaeval BARO AC@1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['offset']:+.0f} | {r['dataset']} | {f(r['ac@1'])} | {f(r['ac@3'])} | {f(r['kind'])} | "
              f"{f(r['inconclusive'])} | {f(r['conf'])} | {f(r['baro'])} |")
    print(f"\nCalibration over all {len(cases)} cases of all offsets: how often the top-1 was right\n")
    print("| top-1 confidence | cases | top-1 right |")
    print("|---|---|---|")
    for lo, hi in zip(CONFIDENCE_BINS, CONFIDENCE_BINS[1:], strict=False):
        sel = [c for c in cases if lo <= (c["confidence"] or 0.0) < hi]
        right = f(sum(c["hit@1"] for c in sel) / len(sel)) if sel else "-"
        print(f"| [{lo:.1f}, {min(hi, 1.0):.1f}{')' if hi < 1 else ']'} | {len(sel)} | {right} |")
    for label, pick in (("marked inconclusive", lambda c: c["inconclusive"]),
                        ("not inconclusive", lambda c: not c["inconclusive"])):
        sel = [c for c in cases if pick(c)]
        right = f(sum(c["hit@1"] for c in sel) / len(sel)) if sel else "-"
        print(f"| {label} | {len(sel)} | {right} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
