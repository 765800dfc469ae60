"""Where to start a manual investigation inside a window: the pure part (the agent's side reads the
telemetry and the alerts, ``server/starting.py``).

Rises are located with a single change point: the split of the series that maximises the standardised
difference of the means after and before it; a rise counts when that difference is at least ``MIN_Z``
robust standard deviations of the part before it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine.roles import category

MIN_Z = 3.0
MIN_POINTS = 6
BUCKETS = 120          # the error count's resolution over the window


def change_point(ts: np.ndarray, v: np.ndarray, min_scale: float = 1e-6) -> tuple[float, float] | None:
    """(time of the rise, its robust z) for the strongest upward mean shift in the series, or None.
    ``min_scale`` floors the spread of the part before the rise (1 for counts: Poisson noise)."""
    order = np.argsort(ts)
    ts, v = ts[order], v[order]
    n = len(v)
    if n < MIN_POINTS:
        return None
    c = np.cumsum(v)
    k = np.arange(2, n - 1)                     # at least two points on each side
    before = c[k - 1] / k
    after = (c[-1] - c[k - 1]) / (n - k)
    stat = (after - before) * np.sqrt(k * (n - k) / n)
    i = int(np.argmax(stat))
    split = int(k[i])
    base = v[:split]
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med))) * 1.4826
    scale = max(mad, float(np.std(base)), 0.05 * abs(med), min_scale)
    z = (float(np.mean(v[split:])) - float(np.mean(base))) / scale
    if z < MIN_Z:
        return None
    return float(ts[split]), z


@dataclass(frozen=True)
class Rise:
    at: float                  # when it rose (epoch seconds)
    z: float                   # how clearly (robust z)
    resource: str = ""
    metric: str = ""
    count: int = 0             # errors in the window (error-rate spikes)
    bucket_s: float = 0.0


def cpu_rise(metrics: pd.DataFrame) -> Rise | None:
    """The CPU series (by its name's role) with the clearest rise, or None."""
    best: Rise | None = None
    for (res, name), g in metrics.groupby(["resource", "name"], sort=False):
        if category(str(name))[0] != "cpu":
            continue
        cp = change_point(g["ts"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float))
        if cp and (best is None or cp[1] > best.z):
            best = Rise(at=cp[0], z=cp[1], resource=str(res), metric=str(name))
    return best


def error_times(spans: pd.DataFrame, logs: pd.DataFrame) -> np.ndarray:
    """When errors happened: failed spans' starts and ERROR/FATAL/CRITICAL log lines."""
    times = [spans["start"].to_numpy(dtype=float)[spans["error"].astype(bool).to_numpy()]] if len(spans) else []
    if len(logs):
        lv = logs["level"].fillna("").astype(str).str.upper()
        times.append(logs["ts"].to_numpy(dtype=float)[lv.str.startswith(("ERR", "FATAL", "CRIT")).to_numpy()])
    return np.concatenate(times) if times else np.array([], dtype=float)


def error_spike(errors: np.ndarray, start: float, end: float) -> Rise | None:
    """When the error count stepped up in [start, end], or None (no errors, or no step)."""
    if len(errors) == 0:
        return None
    step = max((end - start) / BUCKETS, 1.0)
    edges = np.arange(start, end + step, step)
    counts, _ = np.histogram(errors, bins=edges)
    cp = change_point(edges[:-1], counts.astype(float), min_scale=1.0)
    if cp is None:
        return None
    return Rise(at=cp[0], z=cp[1], count=int(len(errors)), bucket_s=step)
