"""BARO (Pham et al., FSE 2024), the reference baseline, from its published description: fit a robust
scaler (median, inter-quartile range) on the normal window of each metric, score each metric by its
maximum absolute robust z in the anomalous window, rank metrics by score and services by their
best metric. Metrics only, no topology."""

from __future__ import annotations

import numpy as np

from vigil.engine.observation import Observation
from vigil.engine.settings import Settings


def baro_rank(obs: Observation, s: Settings | None = None) -> list[tuple[str, float]]:
    s = s or Settings()
    m = obs.metrics
    if m.empty:
        return []
    best: dict[str, float] = {}
    for (resource, _name), g in m.groupby(["resource", "name"], sort=False):
        ts = g["ts"].to_numpy(dtype=float)
        v = g["value"].to_numpy(dtype=float)
        normal = v[(ts >= obs.onset - s.metric_lookback_s) & (ts < obs.onset)]   # as published: data before it
        anomalous = v[(ts >= obs.onset) & (ts <= obs.onset + s.after_s)]
        if len(normal) < 1 or len(anomalous) == 0:
            continue
        q1, med, q3 = np.percentile(normal, [25, 50, 75])
        iqr = q3 - q1
        if iqr == 0:
            iqr = 1.0  # sklearn's RobustScaler leaves a zero-IQR feature unscaled
        score = float(np.max(np.abs((anomalous - med) / iqr)))
        if score > best.get(str(resource), -1.0):
            best[str(resource)] = score
    return sorted(best.items(), key=lambda kv: -kv[1])
