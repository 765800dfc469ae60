"""Mitigations and recommendations derived from an investigation's ranked hypotheses.

Vigil does not store mitigation plans yet (``model/response.py`` defines their shape only), so the
MCP ``recommendations`` tool derives them here, deterministically, from what is stored: each
hypothesis's fault kind, resource and evidence (a change near the onset suggests rolling it back),
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
    Mitigation,
    MitigationStep,
    Recommendation,
)

Step = tuple[str, str, bool, str]       # action, rationale, mutating, command

_PLAYBOOK: dict[FaultKind, tuple[str, list[Step], str, str]] = {
    FaultKind.CPU: ("Relieve CPU saturation on {r}", [
        ("Confirm the saturation and throttling of {r}'s instances", "the evidence shows its own CPU rose", False,
         "kubectl top pod -l app={r}"),
        ("Find what is burning CPU (a hot loop, a retry storm, a batch job) in {r}'s recent logs and deploys",
         "a cause inside the service outlives any scaling", False, ""),
        ("Scale {r} out, or raise its CPU limit, until the cause is fixed", "restores headroom for callers", True,
         "kubectl scale deployment/{r} --replicas=<n+1>"),
    ], "{r}'s CPU returns to its baseline and its callers' latency recovers",
        "scale back to the previous replica count / limit"),
    FaultKind.MEMORY: ("Stop {r} running out of memory", [
        ("Check {r} for OOM kills, restarts and memory growth", "the evidence shows its memory rose", False,
         "kubectl get pod -l app={r} -o wide; kubectl describe pod -l app={r}"),
        ("Restart the leaking instances of {r} to recover now", "buys time; a leak comes back", True,
         "kubectl rollout restart deployment/{r}"),
        ("Raise {r}'s memory limit or roll back the release that introduced the growth", "fixes the cause", True,
         ""),
    ], "{r}'s memory is flat again and no instance restarts", "restore the previous limit / release"),
    FaultKind.DISK: ("Free disk I/O or space on {r}", [
        ("Check disk usage and I/O wait of {r}'s volumes", "the evidence shows disk pressure", False, ""),
        ("Remove what fills the disk (logs, temp files) or move {r} to a less busy volume", "", True, ""),
    ], "disk usage and I/O wait of {r} are back to baseline", "none needed"),
    FaultKind.NETWORK_DELAY: ("Remove the network delay in front of {r}", [
        ("Compare {r}'s server-side latency with its callers' client-side latency", "a gap means the network",
         False, ""),
        ("Look for traffic shaping, a chaos experiment, a saturated node or a changed network policy around {r}",
         "", False, "kubectl get networkpolicy; tc qdisc show (on the node)"),
        ("Move {r}'s instances off the affected node", "", True, "kubectl drain <node> --ignore-daemonsets"),
    ], "callers' client latency to {r} matches {r}'s own server latency again", "uncordon the node"),
    FaultKind.NETWORK_LOSS: ("Stop packet loss around {r}", [
        ("Check retransmits and connection errors between {r} and its callers", "", False, ""),
        ("Look for a chaos experiment, a failing node NIC or a changed network policy around {r}", "", False, ""),
        ("Move {r}'s instances off the affected node", "", True, "kubectl drain <node> --ignore-daemonsets"),
    ], "connection errors to {r} stop", "uncordon the node"),
    FaultKind.ERROR: ("Stop {r} returning errors", [
        ("Read {r}'s error logs and failing spans around the onset", "the evidence shows errors start there",
         False, ""),
        ("Roll back {r}'s most recent deploy or config change if one precedes the onset", "", True,
         "kubectl rollout undo deployment/{r}"),
    ], "{r}'s error rate returns to its baseline", "redeploy the rolled-back version"),
    FaultKind.LOGIC: ("Find the behaviour change in {r}", [
        ("Compare {r}'s request paths before and after the onset (spans that appear or vanish)",
         "the evidence shows its behaviour changed without errors", False, ""),
        ("Roll back {r}'s most recent change", "a logic fault is usually a release", True,
         "kubectl rollout undo deployment/{r}"),
    ], "{r}'s request paths match the baseline again", "redeploy the rolled-back version"),
    FaultKind.CHANGE: ("Roll back the change to {r}", [
        ("Review the change to {r} recorded near the onset", "it is the strongest evidence", False, ""),
        ("Roll it back", "", True, "kubectl rollout undo deployment/{r}"),
    ], "the symptoms stop after the rollback", "re-apply the change once fixed"),
    FaultKind.LATENCY: ("Find why {r} got slower", [
        ("Check {r}'s thread/connection pools, GC pauses and its own dependencies", "it is slower with no "
         "resource saturation to explain it", False, ""),
        ("Scale {r} out if it is queueing", "", True, "kubectl scale deployment/{r} --replicas=<n+1>"),
    ], "{r}'s server latency returns to its baseline", "scale back"),
    FaultKind.UNKNOWN: ("Collect more evidence about {r}", [
        ("Query {r}'s metrics, logs and traces around the onset", "the fault kind is not clear", False, ""),
    ], "", ""),
}


def mitigation(h: Hypothesis) -> Mitigation:
    title, steps, verify, rollback = _PLAYBOOK.get(h.fault_kind, _PLAYBOOK[FaultKind.UNKNOWN])
    r = h.resource
    out = [MitigationStep(action=a.format(r=r), rationale=why.format(r=r), mutating=m, command=c.format(r=r))
           for a, why, m, c in steps]
    for ev in h.evidence:
        if ev.kind is EvidenceKind.CHANGE:
            out.insert(0, MitigationStep(action=f"Review and consider rolling back: {ev.title}",
                                         rationale="a change near the onset is evidence for this hypothesis",
                                         mutating=False))
            break
    return Mitigation(hypothesis_id=h.id, title=title.format(r=r), steps=out, verification=verify.format(r=r),
                      rollback=rollback.format(r=r))


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
