"""Steering a rerun: "focus on X" keeps the hypotheses on X and what X depends on; "exclude X" drops
the hypotheses on X. A post-ranking step (the analysis itself is the same); the journal says what was
steered, and the ranks and the top confidence are recomputed over what is left."""

from __future__ import annotations

from typing import Any

import networkx as nx

from vigil.engine.confidence import confidences
from vigil.engine.settings import Settings
from vigil.model import EdgeKind, Steering, Topology


def scope(steering: Steering, topology: Topology) -> set[str] | None:
    if not steering.focus:
        return None
    g = nx.DiGraph()
    g.add_edges_from((e.src, e.dst) for e in topology.edges if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON))
    out = set(steering.focus)
    for f in steering.focus:
        if f in g:
            out |= nx.descendants(g, f)
    return out


def apply(analysis: Any, steering: Steering | None, topology: Topology, settings: Settings | None = None) -> str | None:
    """Filter ``analysis.hypotheses`` in place; returns the journal line (None when not steered). The
    confidences are the engine's, over what is left."""
    settings = settings or Settings()
    if steering is None or not (steering.focus or steering.exclude):
        return None
    keep = scope(steering, topology)
    before = [h.resource for h in analysis.hypotheses]
    hyps = [h for h in analysis.hypotheses if h.resource not in set(steering.exclude)
            and (keep is None or h.resource in keep)]
    for i, h in enumerate(hyps, 1):
        h.rank = i
    for h, c in zip(hyps, confidences([h.score for h in hyps], settings), strict=True):
        h.confidence = round(c, 3)
    analysis.hypotheses = hyps
    dropped = [r for r in before if r not in {h.resource for h in hyps}]
    parts = []
    if steering.focus:
        parts.append("focus on " + ", ".join(steering.focus) + " and what they depend on")
    if steering.exclude:
        parts.append("exclude " + ", ".join(steering.exclude))
    line = f"steered by {steering.by or 'a person'}: " + "; ".join(parts) + \
        (f" (left out {', '.join(dropped[:10])})" if dropped else " (nothing left out)")
    if not hyps:
        analysis.inconclusive = True
        analysis.summary = "Inconclusive: nothing in the steered scope stands out."
    elif steering.focus or dropped:
        h = hyps[0]
        analysis.inconclusive = h.confidence < settings.ranking.inconclusive_below
        analysis.summary = (f"Probable root cause (steered): {h.resource} ({h.fault_kind.value}), confidence "
                            f"{h.confidence:.0%}: {h.why}.") if not analysis.inconclusive else \
            f"Inconclusive (steered): best guesses {', '.join(x.resource for x in hyps[:3])}."
    return line
