"""Trace evidence: per-service latency attribution that separates a service's own time from the
time it inherits from its callees, network gaps on cross-service calls, per-operation volume
shifts and error shares; and the service call graph learned from parent/child spans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine.findings import EdgeShift, Finding, SpanEvidence
from vigil.engine.prepared import Prepared
from vigil.engine.stats import effect, median, poisson_z, robust_location_scale
from vigil.model import EvidenceKind


def _enrich(sp: pd.DataFrame) -> pd.DataFrame:
    """Add self time (duration minus direct children) and, for cross-service single-child calls, the
    network/queueing gap between the caller's client span and the callee's server span."""
    sp = sp.reset_index(drop=True)
    child_sum = sp.groupby("parent_id")["duration_ms"].sum()
    child_n = sp.groupby("parent_id").size()
    sp["self_ms"] = (sp["duration_ms"] - sp["span_id"].map(child_sum).fillna(0.0)).clip(lower=0.0)
    par = sp[["span_id", "resource", "duration_ms"]].rename(
        columns={"span_id": "parent_id", "resource": "caller", "duration_ms": "parent_ms"})
    sp = sp.merge(par, on="parent_id", how="left")
    single = sp["parent_id"].map(child_n).fillna(0) == 1
    cross = sp["caller"].notna() & (sp["caller"] != sp["resource"]) & single
    sp["gap_ms"] = np.where(cross, (sp["parent_ms"] - sp["duration_ms"]).clip(lower=0.0), np.nan)
    return sp


def _shift(base: np.ndarray, inc: np.ndarray) -> float:
    """Robust z of the incident median against the baseline distribution."""
    med, scale = robust_location_scale(base)
    return (median(inc) - med) / scale


@dataclass(frozen=True)
class Config:
    z_cap: float = 50.0


class Spans:
    """What the leading candidates' spans show: own time per operation, operation volumes, call gaps
    and failed spans, with an exemplar trace (evidence for people; not scored)."""

    name = "span-evidence"
    family = "evidence"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["spans"] else "no spans"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        return analyze_traces(p, config)


def analyze_traces(p: Prepared, c: Config) -> list[Finding]:
    s = p.settings
    sp = p.spans
    if sp.empty:
        return []
    t = sp["start"].to_numpy(dtype=float)
    base_mask = p.reference(t, s.event_lookback_s, min_points=s.min_events)[0]
    inc_mask = (t >= p.onset) & (t <= p.onset + s.after_s)
    if not inc_mask.any() or not base_mask.any():
        return []
    sp = _enrich(sp[base_mask | inc_mask].copy())
    t = sp["start"].to_numpy(dtype=float)
    sp["inc"] = (t >= p.onset) & (t <= p.onset + s.after_s)
    findings: list[Finding] = []
    total_b, total_i = int((~sp["inc"]).sum()), int(sp["inc"].sum())
    described = sp[sp["resource"].isin(p.focus)] if p.focus is not None else sp

    # own latency per (service, operation)
    per_service: dict[str, list[tuple[float, str, dict]]] = {}
    volume: dict[str, list[tuple[float, str, dict]]] = {}
    for (res, op), g in described.groupby(["resource", "operation"], sort=False):
        inc = g["inc"].to_numpy()
        b_self, i_self = g["self_ms"].to_numpy()[~inc], g["self_ms"].to_numpy()[inc]
        nb, ni = len(b_self), len(i_self)
        if nb >= 3 and ni >= 3:
            z = _shift(b_self, i_self) * effect(median(b_self), median(i_self))
            if z > 0:
                per_service.setdefault(str(res), []).append((z, str(op), {
                    "operation": str(op), "self_ms_before": median(b_self),
                    "self_ms_after": median(i_self), "spans_before": nb, "spans_after": ni,
                    "exemplar_trace": str(g["trace_id"].to_numpy()[inc][np.argmax(i_self)])}))
        if total_b and nb + ni >= s.min_events:
            expected = (nb + 0.5) / (total_b + 1) * total_i
            z = poisson_z(ni, expected) * effect(expected, ni)
            volume.setdefault(str(res), []).append((abs(z), str(op), {
                "operation": str(op), "spans_before": nb, "spans_after": ni, "expected": round(expected, 1),
                "z": round(z, 2)}))
    for res, items in per_service.items():
        items.sort(key=lambda x: -x[0])
        z, op, d = items[0]
        findings.append(Finding(res, "evidence", "latency", EvidenceKind.TRACE, min(z, c.z_cap),
                                f"own time of {op} rose from {d['self_ms_before']:.1f} ms to "
                                f"{d['self_ms_after']:.1f} ms (robust z {z:.1f})",
                                detail=SpanEvidence(**d, operations=[i[2] for i in items[:5]])))
    for res, items in volume.items():
        items.sort(key=lambda x: -x[0])
        z, op, d = items[0]
        if z > 0:
            findings.append(Finding(res, "evidence", "operation", EvidenceKind.TRACE, min(z, c.z_cap),
                                    f"{op}: {d['spans_after']} spans after onset, {d['expected']} expected",
                                    detail=SpanEvidence(operation=d["operation"], spans_before=d["spans_before"],
                                                        spans_after=d["spans_after"], expected=d["expected"],
                                                        operations=[i[2] for i in items[:5]])))

    # network gaps on cross-service edges: a node whose edges (in and out) all slowed is the suspect
    gaps = sp[sp["gap_ms"].notna()]
    if p.focus is not None:
        gaps = gaps[gaps["caller"].isin(p.focus) | gaps["resource"].isin(p.focus)]
    edge_z: dict[tuple[str, str], float] = {}
    for (a, b), g in gaps.groupby(["caller", "resource"], sort=False):
        inc = g["inc"].to_numpy()
        gb, gi = g["gap_ms"].to_numpy()[~inc], g["gap_ms"].to_numpy()[inc]
        if len(gb) >= 3 and len(gi) >= 3:
            edge_z[(str(a), str(b))] = max(_shift(gb, gi), 0.0)
    nodes: dict[str, list[float]] = {}
    for (a, b), z in edge_z.items():
        nodes.setdefault(a, []).append(z)
        nodes.setdefault(b, []).append(z)
    for n, zs in nodes.items():
        score = float(np.mean(np.minimum(zs, c.z_cap)))
        if score > 0:
            slowed = {f"{a}->{b}": round(z, 2) for (a, b), z in edge_z.items() if n in (a, b)}
            findings.append(Finding(n, "evidence", "network", EvidenceKind.TRACE, score,
                                    f"call gaps on {sum(1 for z in zs if z > 3)} of {len(zs)} edges slowed",
                                    detail=EdgeShift(edges=slowed, source="span pairs")))

    # errors
    if sp["error"].astype(bool).any():
        for res, g in described.groupby("resource", sort=False):
            inc = g["inc"].to_numpy()
            err = g["error"].astype(bool).to_numpy()
            eb, ei, nb, ni = int(err[~inc].sum()), int(err[inc].sum()), int((~inc).sum()), int(inc.sum())
            if ni:
                z = poisson_z(ei, (eb + 0.5) / (nb + 1) * ni)
                if z > 0:
                    findings.append(Finding(str(res), "evidence", "errors", EvidenceKind.TRACE, min(z, c.z_cap),
                                            f"{ei} of {ni} spans failed after onset ({eb} of {nb} before)",
                                            detail=SpanEvidence(spans_before=nb, spans_after=ni)))
    return findings
