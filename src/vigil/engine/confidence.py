"""Confidence of each ranked candidate: a probability that it is the root cause.

The top-1's confidence is a logistic function of three features of the ranked scores (scores are in
[0, 1]): the top-1's score ``s1``, its margin over the runner-up ``s1 - s2``, and the runner-up's score
relative to it ``s2 / s1``. Its coefficients (``Settings.ranking.calibration``) are fitted on the
benchmark's recordings with every recording weighted equally (``fit_calibration``;
``benchmarks/calibrate.py`` prints them from a ``vigil bench --json`` file); the bench checks them out of
sample by refitting without the recording it scores (``bench.harness.held_out_confidences``).

The others share the rest of the belief in proportion to their scores, never more than the top-1's
confidence scaled by their score: confidence falls with rank, and the top-1's is the highest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vigil.engine.settings import Settings


def top_features(scores: Sequence[float]) -> tuple[float, float, float]:
    """(s1, s1 - s2, s2 / s1) of a ranking's scores (best first)."""
    if not scores:
        return 0.0, 0.0, 0.0
    s1 = float(scores[0])
    s2 = float(scores[1]) if len(scores) > 1 else 0.0
    return s1, s1 - s2, (s2 / s1 if s1 > 0 else 0.0)


@dataclass(frozen=True)
class Calibration:
    intercept: float
    score: float
    margin: float
    runner_up: float

    def probability(self, features: tuple[float, float, float]) -> float:
        s1, margin, ratio = features
        x = self.intercept + self.score * s1 + self.margin * margin + self.runner_up * ratio
        return 1.0 / (1.0 + math.exp(-max(min(x, 40.0), -40.0)))


def fit_calibration(features: Sequence[tuple[float, float, float]], hits: Sequence[bool],
                    groups: Sequence[str], l2: float = 0.1, iterations: int = 50) -> Calibration:
    """Logistic regression of top-1 hits on ``top_features``, each group (recording) weighted equally
    (a recording with 184 cases does not outvote one with 8), with a small ridge penalty on the slopes.
    Newton's method: four parameters, a few hundred cases."""
    x = np.column_stack([np.ones(len(features)), np.asarray(features, dtype=float)])
    y = np.asarray(hits, dtype=float)
    g = np.asarray(groups)
    w = np.zeros(len(y))
    names = np.unique(g)
    for name in names:
        sel = g == name
        w[sel] = 1.0 / sel.sum()
    w *= len(y) / max(w.sum(), 1e-12)
    beta = np.zeros(x.shape[1])
    penalty = np.diag([0.0] + [l2] * (x.shape[1] - 1))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -40, 40)))
        grad = x.T @ (w * (p - y)) + penalty @ beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return Calibration(*(round(float(b), 4) for b in beta))


def confidences(scores: list[float], s: Settings, calibration: Calibration | None = None) -> list[float]:
    if not scores:
        return []
    cal = calibration or Calibration(*s.ranking.calibration)
    top = cal.probability(top_features(scores))
    s1 = scores[0]
    rest = sum(scores[1:10]) or 1.0
    out = [top] + [min((1.0 - top) * v / rest, top * v / s1 if s1 > 0 else 0.0) for v in scores[1:]]
    return [min(max(c, 0.0), 1.0) for c in out]
