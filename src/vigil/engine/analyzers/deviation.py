"""Generic deviation: how far each resource's telemetry moved at the onset, whatever it measures.

For every metric series, a robust z of its incident samples against its reference (median and
inter-quartile range, as BARO scores them); for every service in the spans, the same for its span
durations and its error share; for every service in the logs, a Poisson z of its error-level line rate.
A resource's score is its largest z (capped), plus a hundredth for each of its series beyond
``breadth_z`` (at most ``breadth_cap``): many resources reach the cap when a series leaves a constant
reference, and among them the one whose telemetry moved more broadly comes first (not the first name). It says *that* something moved, not what or why, so ranking gives
this family a small weight: it orders candidates the specific families say nothing about, and it
keeps an investigation from ending with no candidates when the window holds telemetry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine.findings import Finding, SeriesShift
from vigil.engine.prepared import Prepared
from vigil.engine.stats import poisson_z
from vigil.model import EvidenceKind


@dataclass(frozen=True)
class Config:
    window_s: float = 300.0      # incident samples: the five minutes after the onset...
    min_samples: int = 2         # ...at least this many of a slow series
    z_cap: float = 50.0
    breadth_z: float = 3.0       # a series beyond this counts towards the resource's breadth...
    breadth_cap: float = 0.5     # ...a hundredth each, at most this much


def _iqr_z(ref: np.ndarray, inc: np.ndarray) -> float:
    q1, med, q3 = np.percentile(ref, [25, 50, 75])
    scale = q3 - q1
    if scale <= 0:
        scale = max(float(np.std(ref)), 0.01 * abs(med), 1e-9)
    return float(np.max(np.abs(inc - med)) / scale)


def _metric_deviations(p: Prepared, config: Config):
    """(resource, z, metric) per series, vectorised over all series: reference quantiles from each
    series' sorted reference samples, the incident's extremes from its incident samples."""
    m = p.metrics
    if m.empty:
        return []
    s = p.settings
    v = m["value"].to_numpy(float)
    ok = np.isfinite(v)
    m = m[ok]
    # series codes in order of first appearance among these rows (the run's series codes, renumbered)
    all_codes, all_keys = p.metric_series
    codes, first = pd.factorize(all_codes[ok])
    keys = [all_keys[i] for i in first.tolist()]
    ts, v = m["ts"].to_numpy(float), m["value"].to_numpy(float)
    order = np.lexsort((ts, codes))
    codes, ts, v = codes[order], ts[order], v[order]
    n = len(keys)
    # each series' step: the median gap between its samples
    gaps = np.diff(ts)
    same = codes[1:] == codes[:-1]
    step = np.full(n, 60.0)
    if same.any():
        g = pd.Series(gaps[same]).groupby(codes[1:][same]).median()
        step[g.index.to_numpy()] = np.maximum(g.to_numpy(), 1e-9)
    st = step[codes]
    ref = np.zeros(len(ts), bool)
    past = (ts >= p.onset - s.metric_lookback_s) & (ts < p.onset - st)
    if p.marked:
        marked = p.marked_mask(ts)
        counts = np.bincount(codes[marked], minlength=n)
        # a short fault-free run still counts for a series with (almost) nothing before the onset
        few_recent = np.bincount(codes[past & ~marked], minlength=n) < 3
        use_marked = (counts >= s.min_reference_points) | (few_recent & (counts >= 2))
        ref = marked & use_marked[codes]
        recent = ~use_marked[codes]
    else:
        recent = np.ones(len(ts), bool)
    ref |= recent & past
    end = p.onset + np.maximum(config.window_s, config.min_samples * st)
    inc = (ts >= p.onset) & (ts <= end)
    if np.bincount(codes[ref], minlength=n).max(initial=0) < 2:
        # nothing to compare with (no fault-free window, no past before the alert): within the window,
        # each series' first quarter is the reference for the rest. Weak, but it says what moved most
        # rather than nothing.
        first = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
        size = np.diff(np.r_[first, len(codes)])
        pos = np.arange(len(codes)) - np.repeat(first, size)
        cut = np.repeat(np.maximum(size // 4, 1), size)
        ref, inc = pos < cut, pos >= cut
    # reference quartiles per series (linear interpolation, as np.percentile)
    rc, rv = codes[ref], v[ref]
    o = np.lexsort((rv, rc))
    rc, rv = rc[o], rv[o]
    cnt = np.bincount(rc, minlength=n)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])

    def q(frac):
        pos = frac * np.maximum(cnt - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(cnt - 1, 0))
        a = rv[np.minimum(start + lo, len(rv) - 1)] if len(rv) else np.zeros(n)
        b = rv[np.minimum(start + hi, len(rv) - 1)] if len(rv) else np.zeros(n)
        return a + (pos - lo) * (b - a)

    q1, med, q3 = q(0.25), q(0.5), q(0.75)
    scale = q3 - q1
    sd = np.sqrt(np.maximum(np.bincount(rc, weights=rv * rv, minlength=n) / np.maximum(cnt, 1)
                            - (np.bincount(rc, weights=rv, minlength=n) / np.maximum(cnt, 1)) ** 2, 0.0))
    scale = np.where(scale > 0, scale, np.maximum(np.maximum(sd, 0.01 * np.abs(med)), 1e-9))
    ic, iv = codes[inc], v[inc]
    hi_v = np.full(n, -np.inf)
    lo_v = np.full(n, np.inf)
    np.maximum.at(hi_v, ic, iv)
    np.minimum.at(lo_v, ic, iv)
    has = (cnt >= 2) & np.isfinite(hi_v)
    z = np.where(has, np.maximum(hi_v - med, med - lo_v) / scale, 0.0)
    return [(str(keys[i][0]), float(z[i]), str(keys[i][1])) for i in np.flatnonzero(has & (z > 0))]


class Deviation:
    name = "deviation"
    family = "deviation"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if any(p.available[k] for k in ("metrics", "spans", "logs")) else "no metrics, spans or logs"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        best: dict[str, tuple[float, str]] = {}
        breadth: dict[str, int] = {}

        def keep(res: str, z: float, what: str) -> None:
            if np.isfinite(z) and z >= config.breadth_z:
                breadth[res] = breadth.get(res, 0) + 1
            if np.isfinite(z) and z > best.get(res, (0.0, ""))[0]:
                best[res] = (min(z, config.z_cap), what)

        s = p.settings
        for res, z, name in _metric_deviations(p, config):
            keep(res, z, f"{name} moved")
        sp = p.spans
        if len(sp):
            t = sp["start"].to_numpy(float)
            ref_mask, _ = p.reference(t, s.event_lookback_s, guard_s=s.onset_guard_s, min_points=s.min_events)
            inc_mask = (t >= p.onset - s.onset_guard_s) & (t <= p.onset + config.window_s)
            frame = pd.DataFrame({"res": sp["resource"].to_numpy(object), "dur": sp["duration_ms"].to_numpy(float),
                                  "err": sp["error"].astype(bool).to_numpy(), "ref": ref_mask, "inc": inc_mask})
            for res, g in frame.groupby("res", sort=False):
                ref, inc = g[g["ref"]], g[g["inc"]]
                if len(ref) >= 3 and len(inc):
                    keep(str(res), _iqr_z(np.log1p(ref["dur"].to_numpy()), np.array([np.log1p(inc["dur"].median())])),
                         "span durations moved")
                    keep(str(res), poisson_z(inc["err"].sum(), (ref["err"].sum() + 0.5) / (len(ref) + 1) * len(inc)),
                         "failed spans rose")
        lg = p.logs
        if len(lg):
            t = lg["ts"].to_numpy(float)
            ref_mask, _ = p.reference(t, s.event_lookback_s, guard_s=s.onset_guard_s, min_points=s.min_events)
            inc_mask = (t >= p.onset - s.onset_guard_s) & (t <= p.onset + config.window_s)
            err = np.isin(p.log_levels, ["ERROR", "WARN"])
            frame = pd.DataFrame({"res": lg["resource"].to_numpy(object), "err": err, "ref": ref_mask, "inc": inc_mask})
            n_ref, n_inc = max(int(ref_mask.sum()), 1), max(int(inc_mask.sum()), 1)
            for res, g in frame.groupby("res", sort=False):
                e_ref, e_inc = int((g["err"] & g["ref"]).sum()), int((g["err"] & g["inc"]).sum())
                keep(str(res), poisson_z(e_inc, (e_ref + 0.5) / n_ref * n_inc), "error-level log lines rose")
        return [Finding(res, "deviation", "deviation", EvidenceKind.METRIC,
                        z + min(0.01 * breadth.get(res, 0), config.breadth_cap),
                        f"{what} (robust z {z:.1f}; {breadth.get(res, 0)} series beyond {config.breadth_z:g})",
                        detail=SeriesShift(metric=what, z=z)) for res, (z, what) in best.items() if z > 0]
