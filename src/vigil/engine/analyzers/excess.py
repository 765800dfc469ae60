"""Excess-volume decomposition over the call graph.

Latency-seconds and error counts add up along synchronous calls; relative changes and z-scores do
not. For every node with request counts we compute, per incident bucket, its *excess* over its own
pre-incident level (latency: requests x (mean latency - baseline mean); errors: errors - requests x
baseline error rate) and subtract what its callees' positive excess accounts for. What is left is the
node's own contribution. Along a chain that all shows one fault, the deepest node keeps the excess
and its callers net out to about zero.

A node with no traffic before the incident has no baseline: it gets no score and no excess, so errors
it shows stay with its caller. Latency excess is shrunk by one standard error of the node's baseline
latency spread (from its percentiles, if it reports them), so noisy low-traffic nodes do not win on
noise. The result is expressed as the share of the alerting node's excess (or of all excess, when the
alert names no node) that each node explains on its own."""

from __future__ import annotations

import re
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from vigil.engine.findings import ExcessShare, Finding
from vigil.engine.prepared import Prepared, series_step
from vigil.engine.roles import category
from vigil.model import EvidenceKind, FaultKind

_MEAN = re.compile(r"average|avg|mean", re.I)
_MEDIAN = re.compile(r"p50|median|(?:^|[^0-9])50(?:$|[^0-9])", re.I)
_Q90 = re.compile(r"p90|(?:^|[^0-9])90(?:$|[^0-9])", re.I)
_Q99 = re.compile(r"p99|(?:^|[^0-9])99(?:$|[^0-9])", re.I)
_COUNT = re.compile(r"request|count|sum|workload|ops|calls|lod|throughput", re.I)
Z90, Z99 = 1.2816, 2.3263


def _pick(names: list[str], pattern: re.Pattern) -> str | None:
    hits = sorted(n for n in names if pattern.search(n))
    return hits[0] if hits else None


def _node_series(keys: list[tuple]) -> dict[str, dict[str, str]]:
    """Which metric of each node is its request count, mean latency, latency quantiles, availability
    (``keys``: every (resource, name) series)."""
    roles: dict[str, dict[str, str]] = {}
    by_res: dict = {}
    for res, name in keys:
        if not pd.isna(res):
            by_res.setdefault(res, []).append(name)
    for res, names in sorted(by_res.items()):
        names = [str(n) for n in names]
        cats = {n: category(n)[0] for n in names}
        traffic = [n for n in names if cats[n] == "traffic" and _COUNT.search(n)]
        lat = [n for n in names if cats[n] == "latency"]
        r: dict[str, str] = {}
        if traffic:
            r["n"] = sorted(traffic)[0]
        mean = _pick(lat, _MEAN) or _pick(lat, _MEDIAN)
        if mean:
            r["lat"] = mean
        for key, pat in (("p50", _MEDIAN), ("p90", _Q90), ("p99", _Q99)):
            q = _pick(lat, pat)
            if q:
                r[key] = q
        avail = [n for n in names if cats[n] == "success"]
        if avail:
            r["avail"] = sorted(avail)[0]
        roles[str(res)] = r
    return roles


@dataclass(frozen=True)
class Config:
    shrink_se: float = 1.0     # latency excess is shrunk by this many standard errors of the node's spread


class Excess:
    """Excess latency-seconds and errors per node, net of its callees (see the module's docstring)."""

    name = "excess"
    family = "excess"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["metrics"] else "no metrics"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        return analyze_excess(p, config)


def analyze_excess(prep: Prepared, cfg: Config) -> list[Finding]:
    m = prep.metrics
    s = prep.settings
    if m.empty:
        return []
    codes, keys = prep.metric_series
    roles = _node_series(keys)
    counted = {r for r, d in roles.items() if "n" in d and ("lat" in d or "avail" in d)}
    if len(counted) < 2:
        return []
    g = prep.graph
    kinds = []
    alert_metric = prep.alert.metric if prep.alert else None
    if alert_metric:
        cat = category(alert_metric)[0]
        kinds = ["latency"] if cat == "latency" else ["errors"] if cat in ("success", "errors") else []
    kinds = kinds or ["latency", "errors"]

    rows = np.isin(codes, [i for i, (r, _) in enumerate(keys) if r in counted])
    ts, wide = _wide(m[rows], codes[rows], keys)
    if len(ts) < 2:
        return []
    step = series_step(ts)
    k = int(np.searchsorted(ts, prep.onset, side="right") - 1)      # the bucket holding the onset
    if k >= 0 and ts[k] + step <= prep.onset:     # no bucket holds the onset (the past lies apart)
        k += 1
    k = max(k, 1)
    pre = np.nonzero((np.arange(len(ts)) < k) & (ts >= prep.onset - s.metric_lookback_s))[0]
    if len(pre) == 0 and prep.marked:      # nothing before the onset: a fault-free run recorded apart
        pre = np.nonzero(prep.marked_mask(ts) & (ts < prep.onset))[0]
    end = prep.onset + max(s.after_s, s.min_after_samples * step)
    inc = np.nonzero((np.arange(len(ts)) >= k) & (ts <= end))[0]
    if len(pre) == 0 or len(inc) == 0:
        return []

    def col(res: str, role: str) -> np.ndarray | None:
        name = roles[res].get(role)
        if name is None or (res, name) not in wide:
            return None
        return wide[(res, name)]

    findings: list[Finding] = []
    for kind in kinds:
        excess: dict[str, np.ndarray] = {}
        shrink: dict[str, np.ndarray] = {}
        for res in counted:
            n = col(res, "n")
            n = np.nan_to_num(n) if n is not None else None
            if n is None or n[pre].sum() <= 0:
                continue                                  # no traffic before: no baseline, no score
            if kind == "latency":
                lat = col(res, "lat")
                if lat is None:
                    continue
                w = n[pre]
                ok = np.isfinite(lat[pre])
                if not ok.any() or w[ok].sum() <= 0:
                    continue
                base = float(np.sum(lat[pre][ok] * w[ok]) / w[ok].sum())
                excess[res] = n * np.nan_to_num(lat - base)
                sigma = _spread(col(res, "p50"), col(res, "p90"), col(res, "p99"), pre)
                n0 = n[pre].sum()
                with np.errstate(divide="ignore", invalid="ignore"):
                    shrink[res] = np.where(n > 0, cfg.shrink_se * n * sigma * np.sqrt(1.0 / np.maximum(n, 1e-9) + 1.0 / n0), 0.0)
            else:
                avail = col(res, "avail")
                if avail is None:
                    continue
                scale = 100.0 if np.nanmax(np.abs(avail)) > 1.5 else 1.0
                errors = np.nan_to_num(n * (scale - avail) / scale)
                p = errors[pre].sum() / n[pre].sum()
                excess[res] = errors - p * n
                shrink[res] = np.zeros(len(n))
        if not excess:
            continue
        own: dict[str, float] = {}
        for res, x in excess.items():
            callees = [c for c in (g.successors(res) if res in g else []) if c in excess]
            vals = []
            for i in inc:
                v = x[i] - sum(max(excess[c][i], 0.0) for c in callees) - shrink[res][i]
                vals.append(v)
            own[res] = float(np.mean(vals))
        target = prep.alert.resource if prep.alert and prep.alert.resource in excess else None
        if target is not None:
            total = float(np.mean([max(excess[target][i], 0.0) for i in inc]))
            candidates = ({target} | nx.descendants(g, target)) if target in g else set(excess)
        else:
            total = float(sum(max(v, 0.0) for v in own.values()))
            candidates = set(excess)
        if total <= 0:
            continue
        unit = "latency-seconds" if kind == "latency" else "errors"
        for res in candidates:
            if res not in own or own[res] <= 0:
                continue
            share = min(own[res] / total, 1.0)
            findings.append(Finding(
                resource=res, family="excess", hypothesis="excess", signal=EvidenceKind.METRIC, score=share,
                fault_kind=FaultKind.LATENCY if kind == "latency" else FaultKind.ERROR,
                title=f"accounts for {share:.0%} of the excess {unit}"
                      + (f" seen at {target}" if target else "") + " after subtracting its callees",
                first_ts=float(ts[inc[0]]),
                detail=ExcessShare(kind=kind, own_excess=own[res], total_excess=total, share=share,
                                   metric=roles[res].get("lat" if kind == "latency" else "avail", ""),
                                   requests_metric=roles[res].get("n", ""))))
    return findings


def _wide(m: pd.DataFrame, codes: np.ndarray, keys: list[tuple]) -> tuple[np.ndarray, dict[tuple, np.ndarray]]:
    """The series on one time axis: the sorted timestamps, and each (resource, name) series' values on
    it (NaN where it has none), as a pivot table of the means gives them; without building one when
    every series has at most one value per timestamp (the usual case). ``codes``: each row's series,
    an index into ``keys``."""
    ts, v = m["ts"].to_numpy(dtype=float), m["value"].to_numpy(dtype=float)
    if len(m) and not (np.isnan(ts).any() or np.isnan(v).any() or any(pd.isna(x) for k in keys for x in k)):
        tc, tu = pd.factorize(ts)
        rank = np.empty(len(tu), dtype=np.int64)
        rank[np.argsort(tu, kind="stable")] = np.arange(len(tu))
        axis, ti = np.sort(tu), rank[tc]
        sc, used = pd.factorize(codes)
        cell = sc.astype(np.int64) * len(axis) + ti
        if pd.Index(cell).is_unique:
            grid = np.full((len(used), len(axis)), np.nan)
            grid[sc, ti] = v
            return axis, {keys[k]: grid[i] for i, k in enumerate(used.tolist())}
    wide = m.pivot_table(index="ts", columns=["resource", "name"], values="value", aggfunc="mean").sort_index()
    return wide.index.to_numpy(dtype=float), {c: wide[c].to_numpy(dtype=float) for c in wide.columns}


def _spread(p50, p90, p99, pre) -> float:
    """Baseline latency spread (a standard deviation) from quantiles, assuming rough normality."""
    ests = []
    for j in pre:
        c = []
        if p50 is not None and p90 is not None and np.isfinite(p90[j] - p50[j]):
            c.append((p90[j] - p50[j]) / Z90)
        if p50 is not None and p99 is not None and np.isfinite(p99[j] - p50[j]):
            c.append((p99[j] - p50[j]) / Z99)
        if c:
            ests.append(max(c))
    return float(np.mean(ests)) if ests else 0.0
