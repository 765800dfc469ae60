"""Fit the top-1 confidence's calibration (``Settings.ranking.calibration``) from a bench run.

    vigil bench ../shared/datasets --json out/bench.json
    python benchmarks/calibrate.py out/bench.json [more.json ...]   (runs split across processes too)

Prints the coefficients fitted on every recording (each weighted equally; paste them into
``engine/settings.py``), and the reliability of the confidences they give, in sample and out of
recording (each recording scored by a fit on the others)."""

from __future__ import annotations

import sys
from pathlib import Path

from vigil.bench.harness import fit_on, held_out_confidences, load_cases, reliability
from vigil.errors import InputError


def main(paths: list[str]) -> None:
    try:
        rows = [r for p in paths for r in load_cases(Path(p))[0] if r.method == "vigil" and r.features]
    except InputError as exc:
        sys.exit(f"error: {exc}")
    if not rows:
        sys.exit("error: no Vigil cases with confidence features in that file (run vigil bench --json first)")
    cal = fit_on(rows)
    print(f"calibration = ({cal.intercept}, {cal.score}, {cal.margin}, {cal.runner_up})")
    for title, conf in (("in sample", [cal.probability(tuple(r.features)) for r in rows]),
                        ("out of recording", held_out_confidences(rows))):
        print(f"\n{title}\n\n| top-1 confidence | cases | mean confidence | top-1 right |\n|---|---|---|---|")
        for b in reliability(rows, conf):
            fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
            print(f"| {b['confidence']} | {b['cases']} | {fmt(b['mean_confidence'])} | {fmt(b['top1_right'])} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/calibrate.py BENCH.json [BENCH.json ...]")
    main(sys.argv[1:])
