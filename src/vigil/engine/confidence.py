"""Confidence of each ranked candidate.

The top-1's confidence is how far its score stands above the runner-up's (``s1 - s2``; scores are in
[0, 1]); the rest of the belief is shared among the alternatives in proportion to their scores."""

from __future__ import annotations

from vigil.engine.settings import Settings


def confidences(scores: list[float], s: Settings) -> list[float]:
    if not scores:
        return []
    top = scores[0] - (scores[1] if len(scores) > 1 else 0.0)
    rest = sum(scores[1:10]) or 1.0
    out = [top] + [(1.0 - top) * v / rest for v in scores[1:]]
    return [min(max(c, 0.0), 1.0) for c in out]
