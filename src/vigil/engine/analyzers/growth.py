"""Memory growth: how far a leading candidate's memory rose over the fault's first minutes.

The local family reads the first minute after the onset, where a fault names itself best. Memory often
shows later than its CPU: a memory stressor burns CPU while it fills pages, and working-set counters
lag the allocation by a scrape or two. This analyzer measures, for the leading candidates, the rise of
each memory series over the first ``window_s`` after the onset:

    fold = held peak / reference median,   held peak = the highest 3-sample running median

(a level two of three consecutive samples reached, so one spike does not count). A candidate's growth
is the *smallest* fold over its memory series (every memory reading must agree), less the median
workload's growth (a load surge moves every workload; a cause stands out), with a z against the
reference's own noise. The same for CPU over the first ``cpu_window_s`` (a CPU hog shows at once). Not scored: the fault-kind rules (``engine/kinds.py``) read it, so that a memory
rise of ``kinds.MEMORY_GROWTH`` (threefold) or more names the kind memory where CPU moved first.

Worked out on the Bookinfo memory-stress cases (``microirc-bookinfo``): there the stressor's CPU rose
in the first half minute and the memory 30-60 s later. Their protocol also doubles the faulty
deployment's replicas at +60 s, so every fault there, CPU and delay included, doubles its deployment's
memory (up to 2.9-fold): the threefold bar sits above what one added replica (or an autoscaler's
doubling) explains. None of the other recordings has a memory fault; on them the rule must do no harm
(no CPU, delay, loss or code fault there grows memory threefold)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vigil.engine import roles
from vigil.engine.findings import Finding, SeriesShift
from vigil.engine.prepared import Prepared, series_step
from vigil.engine.stats import median, series_noise
from vigil.model import EvidenceKind


@dataclass(frozen=True)
class Config:
    window_s: float = 120.0     # memory growth is read over this long after the onset...
    cpu_window_s: float = 60.0  # ...CPU growth over this long (a hog shows at once; memory lags)
    hold_samples: int = 3       # a level counts when the running median of this many samples reaches it
    min_reference: int = 3      # reference samples a series needs
    d_floor: float = 0.1        # minimum noise of log x when computing z


class Growth:
    """Memory growth of the leading candidates over the fault's first minutes (evidence; read by the
    fault-kind rules)."""

    name = "memory-growth"
    family = "evidence"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["metrics"] else "no metrics"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        m = p.metrics
        if m.empty:
            return []
        role_of = {n: roles.role(str(n)) for n in m["name"].unique()}
        m = m[m["name"].map(role_of).isin(_WHAT)]
        best: dict[tuple[str, str], tuple[float, float, str, float, float]] = {}
        for (resource, name), g in m.groupby(["resource", "name"], sort=False):
            what = _WHAT[role_of[name]]
            got = _growth(g["ts"].to_numpy(float), g["value"].to_numpy(float), _window(config, what), p, config)
            if got is None:
                continue
            d, z, base, peak = got
            prev = best.get((str(resource), what))
            if prev is None or (d < prev[0] if what == "memory" else d > prev[0]):
                best[(str(resource), what)] = (d, z, str(name), base, peak)
        # what every workload's series did (a load surge or a deploy moves them all): a cause's growth
        # must stand out from the median workload's
        common = {what: max(0.0, median(np.array([v[0] for (_, w), v in best.items() if w == what])))
                  for what in {w for _, w in best}}
        out = []
        for (resource, what), (d, z, name, base, peak) in best.items():
            if p.focus is not None and resource not in p.focus:
                continue
            d, z = d - common[what], (d - common[what]) * z / d if d > 0 else 0.0
            if d <= 0:
                continue
            out.append(Finding(
                resource=resource, family="evidence", hypothesis=f"growth:{what}", signal=EvidenceKind.METRIC,
                score=d, title=f"{name} grew {peak / base:.1f}-fold within {_window(config, what):.0f} s of the onset "
                               f"({base:.4g} -> {peak:.4g})" + (f", {math.exp(d):.1f}-fold beyond the median workload's"
                                                                 if common[what] > 0 else ""),
                detail=SeriesShift(metric=name, d=d, z=z, base=base, post=peak)))
        return out


_WHAT = {"mem": "memory", "cpu": "cpu"}


def _window(c: Config, what: str) -> float:
    return c.window_s if what == "memory" else c.cpu_window_s


def _growth(ts: np.ndarray, v: np.ndarray, window_s: float, p: Prepared, c: Config) -> tuple[float, float, float, float] | None:
    o = np.argsort(ts, kind="stable")
    ts, v = ts[o], v[o]
    ok = np.isfinite(v)
    ts, v = ts[ok], v[ok]
    if len(ts) == 0:
        return None
    step = series_step(ts)
    ref = p.reference(ts, p.settings.metric_lookback_s, guard_s=step)[0]
    b = v[ref]
    q = v[(ts >= p.onset) & (ts <= p.onset + max(window_s, c.hold_samples * step))]
    if len(b) < c.min_reference or len(q) == 0:
        return None
    base = median(b)
    if base <= 0:
        return None
    k = min(c.hold_samples, len(q))
    held = max(median(q[i:i + k]) for i in range(len(q) - k + 1))
    if held <= 0:
        return None
    d = float(math.log(held / base))
    return d, d / max(series_noise(np.log(np.maximum(b, 1e-12))), c.d_floor), float(base), float(held)
