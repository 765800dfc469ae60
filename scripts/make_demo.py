"""Cut one small real case out of the Nezha recordings for the demo (run once; output is committed).

Usage: python scripts/make_demo.py ../shared/datasets/nezha "2023-01-29 09:47:36" demo/nezha-trainticket
Keeps the Nezha layout: metrics trimmed to [onset-60 min, onset+15 min], the case's three log/trace
files, the fault-free baseline, and a fault list with only this case."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd


def main(src: Path, when: str, dst: Path) -> None:
    onset = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    day = f"{onset:%Y-%m-%d}"
    rca, base = src / "rca_data" / day, src / "construct_data" / day
    out = dst / "rca_data" / day
    if dst.exists():
        shutil.rmtree(dst)
    (out / "metric").mkdir(parents=True)
    lo, hi = onset.timestamp() - 3600, onset.timestamp() + 900
    for f in sorted((rca / "metric").iterdir()):
        df = pd.read_csv(f)
        if "TimeStamp" in df.columns and not f.name.startswith("adservice"):
            df = df[(df["TimeStamp"] >= lo) & (df["TimeStamp"] <= hi)]
        with gzip.open(out / "metric" / f.name, "wt") as fh:
            df.to_csv(fh, index=False)
    for sub in ("log", "trace", "traceid"):
        (out / sub).mkdir()
        for k in range(3):
            name = f"{onset + timedelta(minutes=k):%H_%M}_{sub}.csv.gz"
            if (rca / sub / name).exists():
                shutil.copy(rca / sub / name, out / sub / name)
    for sub in ("log", "trace", "traceid"):
        if (base / sub).is_dir():
            (dst / "construct_data" / day / sub).mkdir(parents=True, exist_ok=True)
            for f in (base / sub).iterdir():
                shutil.copy(f, dst / "construct_data" / day / sub / f.name)
    faults = json.loads((rca / f"{day}-fault_list.json").read_text())
    keep = {h: [e for e in v if e["inject_time"] == when] for h, v in faults.items()}
    (out / f"{day}-fault_list.json").write_text(json.dumps({h: v for h, v in keep.items() if v}, indent=4))
    shutil.copy(src / "LICENSE", dst / "LICENSE")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
