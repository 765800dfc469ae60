"""Workload health: a workload that stopped, restarted or leaks memory.

Three readings of a resource's own series, each a ``local`` finding (scored with the other local
hypotheses, in comparable units):

- **stopped**: a resource that reported steadily before the onset and fell silent after it, while the
  rest of the system kept reporting (a paused, killed or crash-looping pod: its exporter or sidecar goes
  quiet, or its CPU and traffic fall to nothing). Read from its metric series and, where there are
  spans, from its spans. Score: ``stop_score`` x the share of its series that stopped.
- **restarts**: a restart or OOM-kill counter rose after the onset. OOM kills point at memory, other
  restarts at the pod.
- **leak**: its memory rose *steadily* after the onset (Kendall's trend test over the incident window at
  ``leak_z`` or more, a rise of ``leak_rise`` or more of its reference level) while the reference did not
  trend, and no single jump makes up most of the rise (a step is what the local memory hypothesis reads).
  Score: the log fold change from the reference level to the window's end.

Worked out on synthetic series (tests/test_engine_v2.py); none of the development recordings has a
stopped pod or a slow leak, so these readings are checked there only for doing no harm (rankings on the
development recordings are unchanged with this analyzer on and off)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine import roles
from vigil.engine.findings import Finding, SeriesStop
from vigil.engine.prepared import Prepared, series_step
from vigil.engine.stats import median
from vigil.model import EvidenceKind, FaultKind


@dataclass(frozen=True)
class Config:
    lookback_s: float = 30 * 60    # a series must have reported steadily in this much recent past...
    min_before: int = 5            # ...with at least this many samples
    silent_steps: float = 3.0      # silent for this many of its steps after the onset (and...)
    silent_min_s: float = 60.0     # ...at least this long) while others kept reporting
    stop_score: float = 2.0        # score of a resource all of whose series stopped
    min_stopped_share: float = 0.5 # at least this share of its series must have stopped
    floor_fraction: float = 0.05   # CPU below this fraction of its reference level reads as stopped
    leak_window_s: float = 300.0   # a leak is read over this long after the onset (or six samples)...
    leak_min_points: int = 6       # ...from at least this many samples
    leak_z: float = 2.5            # Kendall trend z at least this (six rising samples in a row: 2.6)...
    leak_rise: float = 0.10        # ...and a rise of at least this fraction of the reference level...
    leak_max_jump: float = 0.5     # ...no single step making up more than this share of the rise
    restart_score: float = 1.5


def _kendall_z(y: np.ndarray) -> float:
    """Mann-Kendall trend statistic of a short series, as a z (no tie correction beyond dropping ties)."""
    n = len(y)
    if n < 3:
        return 0.0
    diff = np.sign(y[None, :] - y[:, None])
    s = float(np.triu(diff, 1).sum())
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s == 0:
        return 0.0
    return (s - math.copysign(1.0, s)) / math.sqrt(var)


class Resources:
    name = "resources"
    family = "local"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["metrics"] or p.available["spans"] else "no metrics and no spans"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        out: list[Finding] = []
        m = p.metrics
        if len(m):
            out += self._series(p, config, m)
        if len(p.spans):
            out += self._spans(p, config)
        # one finding per (resource, hypothesis): the strongest
        best: dict[tuple[str, str], Finding] = {}
        for f in out:
            k = (f.resource, f.hypothesis)
            if k not in best or f.score > best[k].score:
                best[k] = f
        return list(best.values())

    # -- metric series -----------------------------------------------------------------------------
    def _series(self, p: Prepared, c: Config, m: pd.DataFrame) -> list[Finding]:
        m = m[np.isfinite(m["value"].to_numpy(float))]
        if m.empty:
            return []
        res_a = m["resource"].to_numpy(object)
        name_a = m["name"].to_numpy(object)
        ts_a = m["ts"].to_numpy(float)
        v_a = m["value"].to_numpy(float)
        key = pd.factorize(pd.Series(res_a).astype(str) + "\x00" + pd.Series(name_a).astype(str))[0]
        order = np.lexsort((ts_a, key))
        key, ts_a, v_a, res_a, name_a = key[order], ts_a[order], v_a[order], res_a[order], name_a[order]
        cuts = np.flatnonzero(np.diff(key)) + 1
        starts, ends = np.r_[0, cuts], np.r_[cuts, len(key)]
        horizon = p.onset + p.settings.after_s
        inside = (ts_a >= p.onset) & (ts_a <= horizon)
        last_seen = float(ts_a[inside].max()) if inside.any() else p.onset   # how far the recording goes on
        per_res: dict[str, list[tuple[str, bool]]] = {}
        found: list[Finding] = []
        for a, e in zip(starts, ends, strict=True):
            res, name = str(res_a[a]), str(name_a[a])
            ts, v = ts_a[a:e], v_a[a:e]
            role = roles.role(name)
            before = (ts >= p.onset - c.lookback_s) & (ts < p.onset)
            if before.sum() < c.min_before:
                continue
            step = series_step(ts[before])
            silent_for = max(c.silent_steps * step, c.silent_min_s)
            after = (ts >= p.onset) & (ts <= horizon)
            # stopped: around the onset, then no sample for silent_for while the rest goes on reporting
            last = float(ts[after].max()) if after.any() else float(ts[before].max())
            stopped = last >= p.onset - p.settings.onset_guard_s and last + silent_for < last_seen
            if not stopped and role == "cpu" and after.any():
                ref = median(v[before])
                early = v[after & (ts <= p.onset + max(silent_for, 2 * step))]
                stopped = ref > 0 and len(early) >= 2 and float(np.max(early)) <= c.floor_fraction * ref
            if role != "node":
                per_res.setdefault(res, []).append((name, bool(stopped)))
            if role == "restarts" and after.any():
                rose = float(np.max(v[after])) - float(np.max(v[before]))
                if rose >= 1.0 or (float(np.max(v[after])) > 0 and float(np.max(v[before])) == 0):
                    oom = "oom" in name.lower()
                    found.append(Finding(
                        res, "local", "local:restarts", EvidenceKind.METRIC, c.restart_score,
                        f"it {'was killed for running out of memory' if oom else 'restarted'} after the onset ({name})",
                        fault_kind=FaultKind.MEMORY if oom else FaultKind.POD_FAILURE,
                        detail=SeriesStop(metrics=[name], restarts=int(max(rose, 1)))))
            if role == "mem":
                f = self._leak(p, c, res, name, ts, v, before)
                if f is not None:
                    found.append(f)
        for res, series in per_res.items():
            stopped = [n for n, s in series if s]
            share = len(stopped) / len(series)
            if stopped and share >= c.min_stopped_share:
                found.append(Finding(
                    res, "local", "local:stopped", EvidenceKind.METRIC, c.stop_score * share,
                    f"it stopped reporting after the onset ({len(stopped)} of its {len(series)} series went "
                    f"silent or to nothing while the rest of the system kept reporting)",
                    fault_kind=FaultKind.POD_FAILURE, detail=SeriesStop(metrics=stopped[:10])))
        return found

    def _leak(self, p: Prepared, c: Config, res: str, name: str, ts: np.ndarray, v: np.ndarray,
              before: np.ndarray) -> Finding | None:
        step = series_step(ts)
        win = (ts >= p.onset) & (ts <= p.onset + max(c.leak_window_s, (c.leak_min_points - 0.5) * step))
        y = v[win]
        if len(y) < c.leak_min_points:
            return None
        ref = v[before]
        base = median(ref)
        if not base > 0:
            return None
        rise = float(y[-1] - base)
        if rise < c.leak_rise * base:
            return None
        if float(np.max(np.diff(y))) > c.leak_max_jump * max(float(y[-1] - y[0]), 1e-12):
            return None
        z = _kendall_z(y)
        z_ref = _kendall_z(ref[-len(y):]) if len(ref) >= 3 else 0.0
        if z < c.leak_z or z_ref >= c.leak_z:
            return None
        slope = float(np.polyfit(ts[win] - ts[win][0], y, 1)[0]) * 60.0
        d = float(np.log(y[-1] / base))
        return Finding(res, "local", "local:leak", EvidenceKind.METRIC, d,
                       f"its memory climbed steadily after the onset ({name}: {base:.4g} -> {y[-1]:.4g}, "
                       f"trend z {z:.1f})", fault_kind=FaultKind.MEMORY,
                       detail=SeriesStop(metrics=[name], slope_per_min=slope))

    # -- spans -------------------------------------------------------------------------------------
    def _spans(self, p: Prepared, c: Config) -> list[Finding]:
        sp = p.spans
        t = sp["start"].to_numpy(float)
        res = sp["resource"].to_numpy(object)
        end = min(float(t.max()), p.onset + p.settings.after_s)
        if end - p.onset < c.silent_min_s:
            return []
        before = (t >= p.onset - p.settings.event_lookback_s) & (t < p.onset)
        after = (t >= p.onset) & (t <= end)
        nb = pd.Series(res[before]).value_counts()
        na = pd.Series(res[after]).value_counts()
        span_b = max(float(np.ptp(t[before])) if before.sum() > 1 else 0.0, 1.0)
        out = []
        for r, k in nb.items():
            if k < c.min_before * 2 or na.get(r, 0) > 0:
                continue
            expected = k / span_b * (end - p.onset)
            if expected < 10:          # too rare to say it fell silent
                continue
            out.append(Finding(str(r), "local", "local:stopped", EvidenceKind.TRACE, c.stop_score,
                               f"its spans stopped after the onset ({k} before, none after; about "
                               f"{expected:.0f} expected)", fault_kind=FaultKind.POD_FAILURE,
                               detail=SeriesStop(metrics=["spans"])))
        return out
