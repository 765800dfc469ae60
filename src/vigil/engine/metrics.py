"""Metric evidence: robust change scoring of every series against its baseline."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from vigil.engine.findings import Finding
from vigil.engine.observation import Observation, Settings
from vigil.engine.stats import effect, robust_location_scale
from vigil.model import EvidenceKind

# Which way is "bad" for a kind of metric: +1 rising, -1 falling, 0 either.
_CATEGORIES: list[tuple[str, re.Pattern, int]] = [
    ("host", re.compile(r"^node|node_|host", re.I), 1),
    ("cpu", re.compile(r"cpu", re.I), 1),
    ("memory", re.compile(r"mem|rss|heap", re.I), 1),
    ("disk", re.compile(r"disk|fs_|filesystem|iops|io_|diskio", re.I), 1),
    ("errors", re.compile(r"error|fail|5xx|exception|(?:^|[_-])err(?:$|[_-])", re.I), 1),
    ("success", re.compile(r"success|availability|apdex", re.I), -1),
    ("latency", re.compile(r"latency|duration|response.?time|p\d\d|_rt$|elapsed|(?:^|[_-])lat(?:$|[_-])", re.I), 1),
    ("network", re.compile(r"network|net_|receive|transmit|bytes|packet|socket|tcp", re.I), 0),
    ("traffic", re.compile(r"workload|request|ops|qps|throughput|count|calls|sum|(?:^|[_-])lod(?:$|[_-])|load", re.I), 0),
    ("syscall", re.compile(r"syscall", re.I), 0),
]
CATEGORY_WEIGHT = {"excess": 1.0, "cpu": 1.0, "memory": 1.0, "disk": 1.0, "errors": 1.0, "success": 1.0, "latency": 1.0,
                   "network": 0.8, "syscall": 0.6, "traffic": 0.5, "host": 0.3, "other": 0.5}


def categorize(name: str) -> tuple[str, int]:
    for cat, pattern, direction in _CATEGORIES:
        if pattern.search(name):
            return cat, direction
    return "other", 0


def series_step(ts: np.ndarray) -> float:
    if len(ts) < 2:
        return 60.0
    d = np.diff(np.sort(ts))
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 60.0


def analyze_metrics(obs: Observation, s: Settings) -> list[Finding]:
    m = obs.metrics
    if m.empty:
        return []
    findings: list[Finding] = []
    for (resource, name), g in m.groupby(["resource", "name"], sort=False):
        ts = g["ts"].to_numpy(dtype=float)
        v = g["value"].to_numpy(dtype=float)
        step = series_step(ts)
        base_mask = obs.in_baseline(ts, s.metric_lookback_s, guard_s=step, min_marked=s.min_baseline_points)
        end = obs.onset + max(s.after_s, s.min_after_samples * step)
        inc_mask = (ts >= obs.onset - step) & (ts <= end)
        base, inc = v[base_mask], v[inc_mask]
        if len(base) < 3 or len(inc) == 0:
            continue
        med, scale = robust_location_scale(base)
        z = (inc - med) / scale
        # a change should also be sharp: judged against the recent past too, so that slow drift
        # (memory creeping up over the hour) does not look like an onset
        recent = v[(ts >= obs.onset - s.recent_window_s) & (ts < obs.onset - step)]
        if len(recent) >= s.min_recent_points:
            rmed, rscale = robust_location_scale(recent)
            zr = (inc - rmed) / rscale
            z = np.where(np.abs(zr) < np.abs(z), zr, z)
        cat, direction = categorize(str(name))
        signed = z * direction if direction else np.abs(z)
        # judged against the worst the baseline itself shows: a spiky series must spike harder
        zb = (base - med) / scale
        zb = np.sort(zb * direction if direction else np.abs(zb))
        worst = float(zb[-2]) if len(zb) >= 2 else 0.0     # second largest: one outlier does not set the bar
        signed = signed / max(worst / s.outlier_z, 1.0)
        i_peak = int(np.argmax(signed))
        peak = float(signed[i_peak])
        if not np.isfinite(peak) or peak <= 0:
            continue
        peak = min(peak, s.z_cap) * effect(med, float(inc[i_peak]), scale)
        over = np.nonzero(signed >= 3.0)[0]
        first = float(ts[inc_mask][over[0]]) if len(over) else None
        near = (ts >= obs.onset - 1800.0) & (ts <= end)
        series = [[float(a), float(b)] for a, b in zip(ts[near][-120:], v[near][-120:], strict=False)]
        findings.append(Finding(
            resource=str(resource), signal=EvidenceKind.METRIC, category=cat, score=peak,
            title=f"{name} {'rose' if z[np.argmax(signed)] > 0 else 'fell'} to {inc[np.argmax(signed)]:.4g} "
                  f"(baseline median {med:.4g}, robust z {peak:.1f})",
            first_ts=first,
            detail={"metric": str(name), "baseline_median": med, "baseline_scale": scale,
                    "peak_value": float(inc[np.argmax(signed)]), "z": peak, "n_baseline": int(len(base)),
                    "n_incident": int(len(inc)), "series": series,
                    "onset": obs.onset, "anomalous_from": float(obs.onset - step), "anomalous_to": float(end)}))
    return findings


def metric_window(obs: Observation, resource: str, name: str, pad_s: float = 1800.0) -> pd.DataFrame:
    """The series around the onset, for charts in reports."""
    m = obs.metrics
    g = m[(m["resource"] == resource) & (m["name"] == name)]
    return g[(g["ts"] >= obs.onset - pad_s) & (g["ts"] <= obs.onset + pad_s)][["ts", "value"]]
