"""Metric evidence: robust change scoring of every series against its baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil.engine.findings import Finding, SeriesChart
from vigil.engine.prepared import Prepared, series_step
from vigil.engine.roles import category
from vigil.engine.stats import effect, robust_location_scale
from vigil.model import EvidenceKind


@dataclass(frozen=True)
class Config:
    recent_window_s: float = 900.0    # a change must also be sharp against the last 15 minutes...
    min_recent_points: int = 5        # ...when they hold this many samples
    outlier_z: float = 3.0            # a reference's own spikes beyond this raise the bar proportionally
    z_cap: float = 50.0               # robust z beyond this is "certainly changed"
    chart_points: int = 120           # points of a series kept for its chart


class MetricEvidence:
    """Charts of the leading candidates' series: each series' robust z against its reference, with the
    series around the onset (evidence for people; not scored)."""

    name = "metric-evidence"
    family = "evidence"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["metrics"] else "no metrics"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        return analyze_metrics(p, config)


def analyze_metrics(p: Prepared, c: Config) -> list[Finding]:
    s = p.settings
    m = p.metrics
    if p.focus is not None and len(m):
        m = m[m["resource"].isin(p.focus)]
    if m.empty:
        return []
    findings: list[Finding] = []
    for (resource, name), g in m.groupby(["resource", "name"], sort=False):
        ts = g["ts"].to_numpy(dtype=float)
        v = g["value"].to_numpy(dtype=float)
        step = series_step(ts)
        base_mask = p.reference(ts, s.metric_lookback_s, guard_s=step)[0]
        end = p.onset + max(s.after_s, s.min_after_samples * step)
        inc_mask = (ts >= p.onset - step) & (ts <= end)
        base, inc = v[base_mask], v[inc_mask]
        if len(base) < 3 or len(inc) == 0:
            continue
        med, scale = robust_location_scale(base)
        z = (inc - med) / scale
        # a change should also be sharp: judged against the recent past too, so that slow drift
        # (memory creeping up over the hour) does not look like an onset
        recent = v[(ts >= p.onset - c.recent_window_s) & (ts < p.onset - step)]
        if len(recent) >= c.min_recent_points:
            rmed, rscale = robust_location_scale(recent)
            zr = (inc - rmed) / rscale
            z = np.where(np.abs(zr) < np.abs(z), zr, z)
        cat, direction = category(str(name))
        signed = z * direction if direction else np.abs(z)
        # judged against the worst the baseline itself shows: a spiky series must spike harder
        zb = (base - med) / scale
        zb = np.sort(zb * direction if direction else np.abs(zb))
        worst = float(zb[-2]) if len(zb) >= 2 else 0.0     # second largest: one outlier does not set the bar
        signed = signed / max(worst / c.outlier_z, 1.0)
        i_peak = int(np.argmax(signed))
        peak = float(signed[i_peak])
        if not np.isfinite(peak) or peak <= 0:
            continue
        peak = min(peak, c.z_cap) * effect(med, float(inc[i_peak]), scale)
        over = np.nonzero(signed >= 3.0)[0]
        first = float(ts[inc_mask][over[0]]) if len(over) else None
        near = (ts >= p.onset - 1800.0) & (ts <= end)
        series = [[float(a), float(b)] for a, b in zip(ts[near][-c.chart_points:], v[near][-c.chart_points:], strict=False)]
        findings.append(Finding(
            resource=str(resource), family="evidence", hypothesis=cat, signal=EvidenceKind.METRIC, score=peak,
            title=f"{name} {'rose' if z[np.argmax(signed)] > 0 else 'fell'} to {inc[np.argmax(signed)]:.4g} "
                  f"(baseline median {med:.4g}, robust z {peak:.1f})",
            first_ts=first,
            detail=SeriesChart(metric=str(name), baseline_median=med, baseline_scale=scale,
                               peak_value=float(inc[np.argmax(signed)]), z=peak, n_baseline=int(len(base)),
                               n_incident=int(len(inc)), series=series, onset=p.onset,
                               anomalous_from=float(p.onset - step), anomalous_to=float(end))))
    return findings
