"""Fit the top-1 confidence's calibration (``Settings.ranking.calibration``) from a bench run.

    vigil bench ../shared/datasets --json out/bench.json
    python benchmarks/calibrate.py out/bench.json

Prints the coefficients fitted on every recording (each weighted equally; paste them into
``engine/settings.py``), and the reliability of the confidences they give, in sample and out of
recording (each recording scored by a fit on the others)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vigil.bench.harness import CaseResult, fit_on, held_out_confidences, reliability


def main(path: str) -> None:
    data = json.loads(Path(path).read_text())
    rows = []
    for c in data["cases"]:
        if c["method"] != "vigil" or not c.get("features"):
            continue
        hit = float(c["hit@1"])          # a share of one when the truth tied with others for first place
        r = CaseResult(case=c["case"], dataset=c["dataset"], method="vigil", fault=c["fault"], truth=c["truth"],
                       ranks=c["top5"], seconds=c["seconds"], features=c["features"])
        r.hit = lambda k, hit=hit: hit   # noqa: B023 - only hit@1 is read here
        rows.append(r)
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
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/calibrate.py BENCH.json")
    main(sys.argv[1])
