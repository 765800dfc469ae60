"""Are two runs' answers the same, case by case? Speed work must leave every ranking and fault kind as it was.

Usage: python benchmarks/compare_rankings.py BEFORE.json AFTER.json [--common] [--tolerance 1e-9]

Reads either ``vigil bench --json`` output (its ``cases``: vigil's top five, fault kinds, confidence,
scores) or ``benchmarks/engine_profile.py --json`` output (every case's whole ranking with fault kinds,
confidences, scores and the reason given). Prints each case that differs and exits 1 if any does."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def load(path: Path) -> dict[str, list]:
    d = json.loads(path.read_text())
    if isinstance(d, dict) and "cases" in d and isinstance(d["cases"], list):     # vigil bench --json
        return {f"{c['dataset']}/{c['case']}": [c["top5"], c["fault_kind"], c["kind_of_truth"], c["confidence"],
                                               c["scores"], c.get("inconclusive")]
                for c in d["cases"] if c["method"] == "vigil"}
    return d


def same(a, b, tol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, (int, float)) and isinstance(b, (int, float))
                and math.isclose(a, b, rel_tol=tol, abs_tol=tol))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b, strict=True))
    return a == b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--common", action="store_true", help="compare only the cases both runs have (a partial run)")
    ap.add_argument("--tolerance", type=float, default=1e-9, help="relative and absolute, for numbers")
    args = ap.parse_args()
    a, b = load(args.before), load(args.after)
    differ = 0
    for case in sorted(set(a) & set(b) if args.common else set(a) | set(b)):
        if case not in a or case not in b:
            print(f"{case}: only in {'before' if case in a else 'after'}")
            differ += 1
        elif not same(a[case], b[case], args.tolerance):
            differ += 1
            print(f"{case}:\n  before {json.dumps(a[case])[:600]}\n  after  {json.dumps(b[case])[:600]}")
    print(f"{len(set(a) & set(b))} cases in both; {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
