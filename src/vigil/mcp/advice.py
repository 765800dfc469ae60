"""Mitigations and recommendations derived from an investigation's ranked hypotheses.

The MCP ``recommendations`` tool derives them here, deterministically, from what is stored: each
hypothesis's mitigation spec (``respond.spec``: the change named as the cause, the fault kind's steps,
with commands built from validated arguments and quoted),
the journal's warnings (missing evidence is a monitoring gap), and the space's other investigations
(the same top cause again is a recurring cause). Nothing here acts: every step that would change
the system is marked ``mutating`` and needs a person; Vigil stays read-only."""

from __future__ import annotations

from vigil.model import (
    EvidenceKind,
    FaultKind,
    Hypothesis,
    HypothesisState,
    Investigation,
    JournalEntry,
    JournalKind,
    Recommendation,
)
from vigil.respond.cause import Cause, from_journal
from vigil.respond.spec import MitigationSpec, build


def mitigation(h: Hypothesis, cause: Cause | None = None, investigation_id: str = "") -> MitigationSpec:
    """The hypothesis's mitigation spec: every command built from validated, quoted arguments
    (``respond.commands``), never by pasting a name into a string."""
    return build(h, investigation_id=investigation_id, cause=cause)


def causes(journal: list[JournalEntry]) -> dict[str, Cause]:
    """The causes the investigation named (its ``cause`` journal notes), by suspect resource."""
    return from_journal(journal)


def recommendations(inv: Investigation, hyps: list[Hypothesis], journal: list[JournalEntry],
                    others: list[tuple[Investigation, Hypothesis | None]]) -> list[Recommendation]:
    """Space-level advice: recurring causes across the space's investigations, gaps in the evidence,
    and deploy practice when a change caused it."""
    out: list[Recommendation] = []
    live = [h for h in hyps if h.state is not HypothesisState.DISCARDED]
    top = live[0] if live else None
    if top is not None:
        same = [i.id for i, h in others if h is not None and i.id != inv.id and h.resource == top.resource]
        if same:
            out.append(Recommendation(
                space_id=inv.space_id, category="recurring-cause",
                title=f"{top.resource} is the top suspect again ({len(same) + 1} investigations)",
                detail=f"the same service leads {len(same)} other investigation(s) in this space; fix the cause "
                       f"({top.fault_kind.value}) rather than the symptom, and add an alert on it",
                incidents=[inv.id, *same[:9]]))
        if top.fault_kind is FaultKind.CHANGE or any(e.kind is EvidenceKind.CHANGE for e in top.evidence):
            out.append(Recommendation(
                space_id=inv.space_id, category="deploy-practice",
                title=f"a change to {top.resource} preceded the incident",
                detail="roll out changes progressively (canary) with an automatic rollback on error-rate and "
                       "latency, so that the next bad change stops early", incidents=[inv.id]))
    gaps = [e.message for e in journal if e.kind is JournalKind.WARNING]
    if gaps:
        out.append(Recommendation(
            space_id=inv.space_id, category="monitoring-gap",
            title=f"the investigation ran on partial evidence ({len(gaps)} warning(s))",
            detail="; ".join(gaps[:5])[:800], incidents=[inv.id]))
    if top is not None and not any(e.kind is EvidenceKind.TRACE for h in live[:3] for e in h.evidence):
        out.append(Recommendation(
            space_id=inv.space_id, category="monitoring-gap",
            title="no trace evidence among the top hypotheses",
            detail="send traces (OTLP) from the services involved so the propagation path is measured, "
                   "not inferred", incidents=[inv.id]))
    return out
