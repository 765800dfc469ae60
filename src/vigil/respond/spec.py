"""Mitigation specs: per hypothesis, what to do now, how to tell it worked, how to undo it and what it
risks; one pydantic schema rendered as JSON (for a coding agent) and Markdown (for a person).

Every command is built by ``respond.commands`` from structured data (validated, an argv list, quoted
when shown). A step Vigil itself can carry out names a directed action (``action``: its kind and exact
arguments); running it still needs the space's opt-in and a person's approval (``respond.approvals``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from vigil.model import EvidenceKind, FaultKind, Hypothesis
from vigil.respond import commands as cmd
from vigil.respond.cause import Cause
from vigil.respond.commands import Command, Unsafe

SCHEMA = "vigil.mitigation/v1"


class ActionRef(BaseModel):
    """A directed action (see ``respond.actions``) with its exact arguments."""

    kind: str
    args: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""


class Step(BaseModel):
    title: str
    rationale: str = ""
    mutating: bool = False
    commands: list[Command] = Field(default_factory=list)
    action: ActionRef | None = None
    note: str = ""


class Verify(BaseModel):
    """Recovery: ``signal`` of ``resource`` over the last ``for_s`` seconds compares to ``threshold``."""

    resource: str
    signal: Literal["errors", "latency", "metric"]
    series: str = Field(description="'error ratio of spans', 'p50 span duration (ms)' or the metric's name.")
    comparison: Literal["<=", ">="] = "<="
    threshold: float
    baseline: float | None = None
    for_s: float = 60.0
    description: str = ""


class RunbookRef(BaseModel):
    id: str
    title: str
    matched: list[str] = Field(default_factory=list)


class MitigationSpec(BaseModel):
    spec: str = SCHEMA
    investigation_id: str = ""
    hypothesis_id: str = ""
    rank: int = 1
    resource: str
    fault_kind: str
    confidence: float = 0.0
    title: str
    cause: str | None = Field(default=None, description="The change named as the cause, when one is.")
    steps: list[Step] = Field(default_factory=list, description="Immediate steps, in order.")
    verify: Verify
    undo: list[Step] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)
    runbooks: list[RunbookRef] = Field(default_factory=list)
    instructions: str = Field(default="", description="The space's always-on instructions.")

    @property
    def actions(self) -> list[ActionRef]:
        return [s.action for s in self.steps if s.action is not None]


def _try(build, *args, **kw) -> tuple[list[Command], str]:
    try:
        out = build(*args, **kw)
    except Unsafe as exc:
        return [], f"no command suggested: {exc}"
    return (out if isinstance(out, list) else [out]), ""


def _step(title: str, rationale: str = "", mutating: bool = False, build=None, *args, action: ActionRef | None = None,
          **kw) -> Step:
    commands, note = _try(build, *args, **kw) if build is not None else ([], "")
    return Step(title=title, rationale=rationale, mutating=mutating, commands=commands, note=note, action=action)


# -- what to do, per fault kind ---------------------------------------------------------------------
def _playbook(h: Hypothesis, ns: str | None, enabled: set[str] | None = None
              ) -> tuple[str, list[Step], list[Step], list[str]]:
    r, k = h.resource, h.fault_kind
    if k is FaultKind.CPU:
        return (f"Relieve CPU saturation on {r}", [
            _step(f"Confirm the saturation and throttling of {r}'s instances", "the evidence shows its own CPU rose",
                  False, cmd.kubectl_top, r, ns),
            _step(f"Find what burns CPU in {r} (a hot loop, a retry storm, a batch job)",
                  "a cause inside the service outlives any scaling"),
            _step(f"Scale {r} out by one replica until the cause is fixed", "restores headroom for callers", True,
                  cmd.kubectl_scale, r, 2, ns,
                  action=_choose([_scale_action(r, ns)], enabled))],
                [_step(f"Scale {r} back to its previous replica count", "", True)],
                ["more replicas add load on what the service calls (databases, queues)", "cost"])
    if k is FaultKind.MEMORY:
        return (f"Stop {r} running out of memory", [
            _step(f"Check {r} for OOM kills, restarts and memory growth", "the evidence shows its memory rose",
                  False, cmd.kubectl_describe_pods, r, ns),
            _step(f"Restart the leaking instances of {r} to recover now", "buys time; a leak comes back", True,
                  cmd.kubectl_rollout_restart, r, ns),
            _step(f"Raise {r}'s memory limit, or roll back the release that introduced the growth", "fixes the cause",
                  True)],
                [_step("Restore the previous memory limit or release", "", True)],
                ["a restart drops in-flight requests and in-memory state"])
    if k is FaultKind.DISK:
        return (f"Free disk I/O or space on {r}", [
            _step(f"Check disk usage and I/O wait of {r}'s volumes", "the evidence shows disk pressure"),
            _step(f"Remove what fills the disk (logs, temp files) or move {r} to a less busy volume", "", True)],
                [], ["deleting files loses them; check what they are first"])
    if k in (FaultKind.NETWORK_DELAY, FaultKind.NETWORK_LOSS):
        return (f"Remove the network fault around {r}", [
            _step(f"Compare {r}'s server-side latency with its callers' client-side latency", "a gap means the network"),
            _step(f"Look for traffic shaping, a chaos experiment or a changed network policy around {r}", "", False,
                  cmd.kubectl_network_policies, ns),
            _step(f"Move {r}'s instances off the affected node (cordon and drain it)", "", True)],
                [_step("Uncordon the node", "", True)],
                ["draining a node moves every pod on it, not only this service's"])
    if k is FaultKind.LATENCY:
        return (f"Find why {r} got slower", [
            _step(f"Check {r}'s thread/connection pools, GC pauses and its own dependencies",
                  "it is slower with no resource saturation to explain it", False, cmd.kubectl_top, r, ns),
            _step(f"Scale {r} out by one replica if it is queueing", "", True, cmd.kubectl_scale, r, 2, ns,
                  action=_choose([_scale_action(r, ns)], enabled)),
            _step(f"Raise the timeout of {r}'s callers only if the slowness is expected to last", "", True)],
                [_step(f"Scale {r} back", "", True)], ["scaling adds load downstream"])
    if k is FaultKind.UNKNOWN:
        return (f"Collect more evidence about {r}", [
            _step(f"Query {r}'s metrics, logs and traces around the onset", "the fault kind is not clear", False,
                  cmd.kubectl_logs, r, ns)], [], [])
    # errors, logic faults, bad changes: a release is the usual cause
    return (f"Stop {r} failing", [
        _step(f"Read {r}'s error logs and failing spans around the onset", "the evidence shows errors start there",
              False, cmd.kubectl_logs, r, ns),
        _step(f"Roll back {r}'s most recent deploy or config change if one precedes the onset", "", True,
              cmd.kubectl_rollout_undo, r, ns, action=_choose([_undo_action(r, ns), _webhook_rollback(r)], enabled))],
            [_step("Redeploy the rolled-back version once it is fixed", "", True)],
            ["the rollback also removes the other changes of that release",
             "a release with a schema migration may not roll back cleanly"])


def _valid(fn, *a) -> bool:
    try:
        fn(*a)
    except Unsafe:
        return False
    return True


def _scale_action(r: str, ns: str | None) -> ActionRef | None:
    if not _valid(cmd.k8s_label_name, r) or (ns and not _valid(cmd.k8s_label_name, ns)):
        return None
    return ActionRef(kind="kubernetes-scale", args={"namespace": ns or "default", "deployment": r, "replicas": 2},
                     summary=f"scale deployment {ns or 'default'}/{r} to 2 replicas")


def _undo_action(r: str, ns: str | None, to_revision: int | None = None) -> ActionRef | None:
    if not _valid(cmd.k8s_label_name, r) or (ns and not _valid(cmd.k8s_label_name, ns)):
        return None
    args: dict[str, Any] = {"namespace": ns or "default", "deployment": r}
    if to_revision:
        args["to_revision"] = to_revision
    return ActionRef(kind="kubernetes-rollout-undo", args=args,
                     summary=f"roll deployment {ns or 'default'}/{r} back"
                             + (f" to revision {to_revision}" if to_revision else " to its previous revision"))


# -- the cause's own remedy -------------------------------------------------------------------------
def _webhook_rollback(svc: str, revision: str = "") -> ActionRef | None:
    if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", svc):
        return None
    params = {"revision": revision[:300]} if revision else {}
    return ActionRef(kind="webhook", args={"operation": "rollback", "service": svc, "params": params},
                     summary=f"ask the deployer to roll {svc} back" + (f" to {revision[:12]}" if revision else ""))


def _choose(candidates: list[ActionRef | None], enabled: set[str] | None) -> ActionRef | None:
    """The first candidate whose kind the space turned on (the first at all when not known)."""
    cs = [c for c in candidates if c is not None]
    if enabled is None:
        return cs[0] if cs else None
    return next((c for c in cs if c.kind in enabled), None)


def _change_steps(c: Cause, enabled: set[str] | None = None) -> tuple[list[Step], list[Step], list[str]]:
    ch, d = c.change, c.change.detail
    svc = ch.resource
    steps: list[Step] = [_step(f"Review the change named as the cause: {ch.kind} of {svc}"
                               + (f" by {ch.author}" if ch.author else ""),
                               "it preceded the onset" + (f"; it changed {', '.join(ch.keys[:8])}" if ch.keys else ""),
                               False, cmd.git_show, str(d["sha"])) if d.get("source") == "git" and d.get("sha")
                         else Step(title=f"Review the change named as the cause: {ch.description[:200]}",
                                   rationale="it preceded the onset" + (f"; it changed {', '.join(ch.keys[:8])}"
                                                                        if ch.keys else ""))]
    undo: list[Step] = []
    risks = ["rolling back also removes whatever else that change shipped"]
    src = d.get("source")
    if src == "kubernetes" and d.get("deployment"):
        ns, dep, prev = str(d.get("namespace") or "default"), str(d["deployment"]), d.get("previous_revision")
        prev = prev if isinstance(prev, int) and prev > 0 else None
        steps.append(_step(f"Roll deployment {ns}/{dep} back" + (f" to revision {prev}" if prev else ""),
                           "restores the pod template that ran before the change", True, cmd.kubectl_rollout_undo,
                           dep, ns, prev, action=_choose([_undo_action(dep, ns, prev), _webhook_rollback(svc)],
                                                         enabled)))
        rev = d.get("revision")
        if isinstance(rev, int):
            undo.append(_step(f"Re-apply revision {rev} once it is fixed", "", True, cmd.kubectl_rollout_undo, dep,
                              ns, rev))
    elif src == "argocd" and d.get("app") and isinstance(d.get("previous_history_id"), int):
        app, hid = str(d["app"]), int(d["previous_history_id"])
        ok = _valid(cmd.k8s_name, app)
        steps.append(_step(f"Roll Argo CD application {app} back to history {hid}"
                           + (f" (revision {str(d.get('previous_revision'))[:12]})" if d.get("previous_revision") else ""),
                           "Argo CD redeploys the previous sync; turn auto-sync off first or it syncs forward again",
                           True, cmd.argocd_rollback, app, hid,
                           action=_choose([ActionRef(kind="argocd-rollback", args={"app": app, "id": hid},
                                                     summary=f"roll Argo CD application {app} back to history {hid}")
                                           if ok else None, _webhook_rollback(svc)], enabled)))
        risks.append("auto-sync re-applies the bad revision unless it is disabled")
        undo.append(_step(f"Sync {app} forward again once the fix is merged", "", True))
    elif src == "git" and d.get("sha"):
        sha = str(d["sha"])
        branch = f"vigil/revert-{sha[:10]}"
        steps.append(_step(f"Revert commit {sha[:10]} on a branch and open a pull request", "the revert is "
                           "reviewed and deployed through the usual pipeline", True, cmd.git_revert, sha, branch,
                           action=_choose([ActionRef(kind="git-revert", args={"sha": sha, "branch": branch},
                                                     summary=f"revert {sha[:10]} on branch {branch} with pull-request "
                                                             "text") if _valid(cmd.git_sha, sha) else None,
                                           _webhook_rollback(svc)], enabled)))
        undo.append(_step(f"Revert the revert once {sha[:10]} is fixed", "", True))
    else:
        prev = d.get("previous_sha") or ""
        steps.append(_step(f"Roll {svc} back to the version before this {ch.kind}"
                           + (f" ({str(prev)[:12]})" if prev else ""), "the change preceded the onset", True,
                           cmd.kubectl_rollout_undo, svc, None,
                           action=_choose([_undo_action(svc, None), _webhook_rollback(svc, str(prev))], enabled)))
        undo.append(_step(f"Redeploy {str(d.get('sha') or 'the new version')[:12]} once it is fixed", "", True))
    if ch.keys:
        steps.insert(1, Step(title=f"Check the changed keys {', '.join(ch.keys[:8])} of {svc}",
                             rationale="a typo or a missing value in a changed key is a common cause", mutating=False))
    return steps, undo, risks


# -- recovery ---------------------------------------------------------------------------------------
def verify_for(h: Hypothesis, for_s: float = 60.0) -> Verify:
    r = h.resource
    ev = {e.detail.get("category"): e for e in h.evidence}
    errors = next((e for e in h.evidence if e.kind is EvidenceKind.TRACE and e.detail.get("category") == "errors"), None)
    if h.fault_kind in (FaultKind.CPU, FaultKind.MEMORY, FaultKind.DISK):
        # a charted series with its baseline (a local shift names a role, "cpu", not a series): one of the
        # fault kind's role first, then any, then the series of the saved views that moved most
        charted = [e for e in h.evidence if e.kind in (EvidenceKind.METRIC, EvidenceKind.VIEW)
                   and e.detail.get("metric") and "baseline_median" in e.detail]
        m = next((e for e in charted if e.kind is EvidenceKind.METRIC and e.detail.get("category") == h.fault_kind.value),
                 next((e for e in charted if e.kind is EvidenceKind.METRIC), next(iter(charted), None)))
        if m is not None:
            med, scale = float(m.detail.get("baseline_median") or 0.0), float(m.detail.get("baseline_scale") or 0.0)
            peak = m.detail.get("peak_value")
            # back within the baseline's spread, or at least a fifth of the way back from the peak
            room = max(3.0 * scale, 0.2 * abs(float(peak) - med) if isinstance(peak, int | float) else 0.0,
                       0.2 * abs(med))
            thr = med + room if room > 0 else med
            return Verify(resource=r, signal="metric", series=str(m.detail["metric"]), threshold=round(thr, 6),
                          baseline=med, for_s=for_s,
                          description=f"{m.detail['metric']} of {r} at or below {thr:.4g} (baseline median "
                                      f"{med:.4g}) for {for_s:g} s")
    lat = ev.get("latency")
    if h.fault_kind in (FaultKind.LATENCY, FaultKind.NETWORK_DELAY) and lat is not None and \
            lat.detail.get("self_ms_before"):
        base = float(lat.detail["self_ms_before"])
        return Verify(resource=r, signal="latency", series="p50 span duration (ms)", threshold=round(base * 1.5, 3),
                      baseline=base, for_s=for_s,
                      description=f"median span duration of {r} at or below {base * 1.5:.1f} ms for {for_s:g} s")
    base = None
    if errors is not None:
        nb = max(1, int(errors.detail.get("errors_before", 0)))
        base = float(errors.detail.get("errors_before", 0)) / nb if nb else 0.0
    thr = 0.02
    return Verify(resource=r, signal="errors", series="error ratio of spans", threshold=thr, baseline=base,
                  for_s=for_s, description=f"at most {thr:.0%} of {r}'s spans fail over {for_s:g} s")


# -- the spec ---------------------------------------------------------------------------------------
def build(h: Hypothesis, investigation_id: str = "", cause: Cause | None = None, namespace: str | None = None,
          runbooks: list[RunbookRef] | None = None, instructions: str = "",
          enabled: set[str] | None = None) -> MitigationSpec:
    """``enabled``: the action kinds the space turned on; a step names the first candidate action of an
    enabled kind (None: the first candidate, whether on or not)."""
    if cause is not None and cause.change.detail.get("namespace"):
        namespace = str(cause.change.detail["namespace"])
    if namespace is not None and not _valid(cmd.k8s_label_name, namespace):
        namespace = None
    title, steps, undo, risks = _playbook(h, namespace, enabled)
    if cause is not None:
        c_steps, c_undo, c_risks = _change_steps(cause, enabled)
        # the cause's remedy replaces the generic rollback
        steps = c_steps + [s for s in steps if "Roll back" not in s.title]
        undo, risks = c_undo + undo, c_risks + risks
        title = f"Undo the {cause.change.kind} of {cause.change.resource} that caused {h.resource}'s " \
                f"{h.fault_kind.value}"
    for rb in runbooks or []:
        steps.append(Step(title=f"Follow runbook {rb.title!r}", rationale="matched on " + ", ".join(rb.matched)))
    return MitigationSpec(investigation_id=investigation_id, hypothesis_id=h.id, rank=h.rank, resource=h.resource,
                          fault_kind=h.fault_kind.value, confidence=h.confidence, title=title,
                          cause=cause.statement if cause else None, steps=steps, verify=verify_for(h), undo=undo,
                          risks=risks, runbooks=runbooks or [], instructions=instructions)


# -- Markdown ---------------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md(text: str) -> str:
    """Telemetry text as inert Markdown: one line; HTML as entities, Markdown punctuation backslashed."""
    flat = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", flat)


def _fence(body: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    f = "`" * max(3, longest + 1)
    return f"{f}sh\n{body}\n{f}"


def _md_steps(steps: list[Step], out: list[str]) -> None:
    for i, s in enumerate(steps, 1):
        tag = " **(changes the system: needs approval)**" if s.mutating else ""
        out.append(f"{i}. {md(s.title)}{tag}" + (f" — {md(s.rationale)}" if s.rationale else ""))
        if s.commands:
            out.append("")
            out.extend("   " + line for line in _fence("\n".join(c.shell for c in s.commands)).splitlines())
            out.append("")
        if s.action is not None:
            out.append(f"   Vigil can run this: `{s.action.kind}` — {md(s.action.summary)}")
        if s.note:
            out.append(f"   _{md(s.note)}_")


def to_markdown(spec: MitigationSpec) -> str:
    out = [f"## Mitigation for #{spec.rank} {md(spec.resource)} ({md(spec.fault_kind)}, "
           f"confidence {spec.confidence:.0%})", "", f"**{md(spec.title)}**", ""]
    if spec.cause:
        out += [f"Cause: {md(spec.cause)}", ""]
    if spec.instructions:
        out += ["Space instructions: " + md(spec.instructions), ""]
    out += ["### Now", ""]
    _md_steps(spec.steps, out)
    v = spec.verify
    out += ["", "### Verify recovery", "",
            f"- {md(v.description)} (`{v.signal}` {v.comparison} {v.threshold:g} on {md(v.series)}, "
            f"for {v.for_s:g} s)"]
    if spec.undo:
        out += ["", "### Undo the mitigation", ""]
        _md_steps(spec.undo, out)
    if spec.risks:
        out += ["", "### Risks", ""] + [f"- {md(r)}" for r in spec.risks]
    if spec.runbooks:
        out += ["", "### Runbooks", ""] + [f"- {md(r.title)} (matched on {md(', '.join(r.matched))})"
                                           for r in spec.runbooks]
    return "\n".join(out) + "\n"
