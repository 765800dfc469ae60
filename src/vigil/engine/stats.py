"""Small robust statistics used by every analyzer."""

from __future__ import annotations

import math

import numpy as np

MAD_TO_SIGMA = 1.4826


def median(x: np.ndarray) -> float:
    """``np.median`` of a small 1-d array, without its generic machinery (several times faster on the
    few dozen points of one series, which is where analyzers call it thousands of times). Like
    ``np.median``, NaN when the array is empty or holds a NaN."""
    s = np.sort(x)
    n = len(s)
    if n == 0 or s[-1] != s[-1]:        # NaN sorts last
        return float("nan")
    return float(0.5 * (s[(n - 1) // 2] + s[n // 2]))


def series_noise(x: np.ndarray) -> float:
    """A series' own noise: the MAD of its sample-to-sample changes over sqrt 2 (a trend or a step does not
    inflate it), or with under four samples the MAD around the median; in sigma units."""
    if len(x) >= 4:
        return MAD_TO_SIGMA * median(np.abs(np.diff(x))) / math.sqrt(2)
    return MAD_TO_SIGMA * median(np.abs(x - median(x)))


def quantile(x: np.ndarray, q: float) -> float:
    """``np.quantile(x, q)`` (linear interpolation) of a small 1-d array, the fast way."""
    s = np.sort(x)
    if len(s) == 0 or s[-1] != s[-1]:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (pos - lo) * (s[hi] - s[lo]))


def robust_location_scale(x: np.ndarray) -> tuple[float, float]:
    """Median and a MAD-based scale that never collapses to zero.

    A constant baseline has MAD 0; we then fall back to the standard deviation, and finally to a
    small fraction of the level (or an absolute epsilon), so that a step from a constant value is a
    large but finite z instead of infinity."""
    med = median(x)
    mad = MAD_TO_SIGMA * median(np.abs(x - med))
    if mad > 0:
        return med, mad
    sd = float(np.std(x))
    if sd > 0:
        return med, sd
    return med, max(abs(med) * 0.01, 1e-9)


def poisson_z(observed: float, expected: float) -> float:
    """Signed deviation of a count from its expectation, Anscombe-stabilised (works at small counts)."""
    return 2.0 * (math.sqrt(observed + 3 / 8) - math.sqrt(expected + 3 / 8))


def squash(x: float, half: float) -> float:
    """Map a non-negative score to [0, 1): ``half`` maps to 0.5."""
    x = max(x, 0.0)
    return x / (x + half)


def effect(before: float, after: float, scale: float = 0.0) -> float:
    """Size of a change as a fraction in [0, 1]: 0 for no change, 1 for a doubling (or halving) or
    more. Statistically clear but tiny shifts (memory 21.3 -> 21.9 %) should not read as incidents."""
    ref = max(abs(before), scale, 1e-12)
    return min(abs(after - before) / ref, 1.0)


def dispersion(z: np.ndarray, min_items: int = 4) -> float:
    """Quasi-Poisson over-dispersion of a set of count z-scores: under the null their median |z| is
    about 0.674 (half-normal). A service whose every template or operation moves is noisy, and its
    shifts count for less; one whose single template moved while the rest held still is not."""
    z = np.asarray(z, dtype=float)
    z = z[np.isfinite(z)]
    if len(z) < min_items:
        return 1.0
    return max(1.0, float(np.median(np.abs(z))) / 0.674)


def null_max(m: int) -> float:
    """Roughly the largest |z| among m independent null z-scores (sqrt(2 ln m)); 0 for a single test."""
    return math.sqrt(2.0 * math.log(m)) if m > 1 else 0.0
