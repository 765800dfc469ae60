"""Prevention from history: across a space's investigations, what to fix so it does not happen again.

- recurring causes: the same (service, fault kind) at the top of several investigations;
- monitoring gaps: alerts that fired late relative to the onset the evidence shows, incidents found by
  hand (no alert at all), sources that failed during investigations;
- single points of failure: services that everything else goes through (articulation points of the call
  graph with several dependents);
- deploy practice: deploys named as a cause (no canary stopped them), and causes with no revision to
  roll back to;
- configuration drift: Kubernetes manifests in a space's git source against the live Deployments of its
  Kubernetes source (replicas, images), and CloudFormation templates in git against the templates the
  stacks of its CloudWatch source run (resources added, removed, retyped or with other properties).

Each item is ranked by severity × likelihood × detectability (1-5 each, higher is worse: detectability
5 means it is hard to notice), and stored as a backlog whose statuses people set (``open``, ``planned``,
``done``, ``dismissed``); a refresh keeps them."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from vigil.model import EdgeKind, HypothesisState, JournalKind, TriggerKind
from vigil.respond.cause import from_journal

log = logging.getLogger("vigil.respond")
LATE_ALERT_S = 60.0
MAX_INVESTIGATIONS = 200
MAX_MANIFESTS = 500


def _item(key: str, category: str, title: str, detail: str, severity: int, likelihood: int, detectability: int,
          investigations: list[str]) -> dict[str, Any]:
    s, li, d = (max(1, min(5, int(x))) for x in (severity, likelihood, detectability))
    return {"key": key[:300], "category": category, "title": title[:500], "detail": detail[:2000], "severity": s,
            "likelihood": li, "detectability": d, "score": float(s * li * d), "investigations": investigations[:20]}


def _first_evidence_ts(h) -> float | None:
    ts = [e.detail.get("first_ts") for e in h.evidence if isinstance(e.detail.get("first_ts"), int | float)]
    return min(ts) if ts else None


def analyse(service: Any, space: str) -> list[dict[str, Any]]:
    st = service.state
    invs = [i for i in st.list_investigations(space, limit=MAX_INVESTIGATIONS) if i.status.finished]
    try:
        topo = service.sources.topology(space)
    except Exception:   # noqa: BLE001
        from vigil.model import Topology
        topo = Topology()
    g = nx.DiGraph()
    g.add_edges_from((e.src, e.dst) for e in topo.edges if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON))
    items: list[dict[str, Any]] = []
    tops: dict[tuple[str, str], list[str]] = defaultdict(list)
    late: dict[str, list[tuple[str, float]]] = defaultdict(list)
    manual: dict[str, list[str]] = defaultdict(list)
    failing_sources: dict[str, list[str]] = defaultdict(list)
    caused_by_deploy: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for inv in invs:
        hyps = [h for h in st.hypotheses(inv.id) if h.state is not HypothesisState.DISCARDED]
        accepted = [h for h in hyps if h.state is HypothesisState.ACCEPTED]
        top = (accepted or hyps or [None])[0]
        journal = st.journal(inv.id)
        for e in journal:
            if e.kind is JournalKind.WARNING and e.source and "query failed" in e.message:
                failing_sources[e.source].append(inv.id)
        if top is None or inv.status.value not in ("concluded", "inconclusive"):
            continue
        tops[(top.resource, top.fault_kind.value)].append(inv.id)
        first = _first_evidence_ts(top)
        if inv.trigger.kind is TriggerKind.ALERT and inv.trigger.alert is not None and first is not None:
            lag = inv.trigger.alert.at.timestamp() - first
            if lag > LATE_ALERT_S:
                late[top.resource].append((inv.id, lag))
        if inv.trigger.kind is TriggerKind.MANUAL and inv.status.value == "concluded":
            manual[top.resource].append(inv.id)
        cause = from_journal(journal).get(top.resource)
        if cause is not None and cause.change.kind in ("deploy", "config"):
            caused_by_deploy[cause.change.resource].append((inv.id, cause))

    def dependents(r: str) -> int:
        return len(nx.ancestors(g, r)) if r in g else 0

    for (res, kind), ids in tops.items():
        if len(ids) >= 2:
            items.append(_item(f"recurring:{res}:{kind}", "recurring-cause",
                               f"{res} ({kind}) is the root cause of {len(ids)} investigations",
                               f"fix the cause in {res} rather than its symptoms; {len(ids)} investigations named it",
                               2 + min(dependents(res), 3), 1 + min(len(ids), 4), 2, ids))
    for res, lags in late.items():
        worst = max(lag for _, lag in lags)
        items.append(_item(f"late-alert:{res}", "monitoring-gap",
                           f"alerts fired up to {int(worst)} s after {res}'s fault began",
                           f"the evidence shows {res} misbehaving {int(worst)} s before the alert; alert on {res}'s "
                           "own error rate and latency, not only on the symptom", 3, 1 + min(len(lags), 4), 4,
                           [i for i, _ in lags]))
    for res, ids in manual.items():
        items.append(_item(f"no-alert:{res}", "monitoring-gap", f"{res}'s fault was found by hand: no alert fired",
                           f"{len(ids)} investigation(s) of {res} started by a person; add an alert on its symptoms",
                           3, 1 + min(len(ids), 4), 5, ids))
    for src, ids in failing_sources.items():
        items.append(_item(f"source-failing:{src}", "monitoring-gap", f"source {src} failed during investigations",
                           f"{len(ids)} investigation(s) ran without {src}'s data", 2, 1 + min(len(ids), 4), 3, ids))
    for svc, pairs in caused_by_deploy.items():
        ids = [i for i, _ in pairs]
        items.append(_item(f"deploy-practice:{svc}", "deploy-practice",
                           f"a {pairs[0][1].change.kind} of {svc} caused an incident with no canary to stop it",
                           "roll out progressively (canary) with an automatic rollback on error rate and latency; "
                           "validate changed configuration keys before they ship", 4, 1 + min(len(ids), 4), 3, ids))
        if not any(c.change.detail.get(k) for _, c in pairs for k in ("previous_revision", "previous_history_id",
                                                                      "previous_sha", "sha")):
            items.append(_item(f"no-rollback:{svc}", "deploy-practice", f"no rollback target is recorded for {svc}'s "
                               "deploys", "record the previous revision with each deploy (deployment payload "
                               "previous_sha, Kubernetes revision history, Argo CD history)", 3, 2, 3, ids))
    und = g.to_undirected()
    if und.number_of_nodes() >= 3:
        for r in nx.articulation_points(und):
            deps = dependents(r)
            if deps >= 2:
                items.append(_item(f"spof:{r}", "single-point-of-failure",
                                   f"{r} is a single point of failure: {deps} services depend on it",
                                   f"every path from {deps} services goes through {r}; run it redundantly (replicas "
                                   "across zones), add timeouts and fallbacks in its callers", 2 + min(deps, 3), 2, 2,
                                   []))
    items += drift(service, space)
    return sorted(items, key=lambda i: (-i["score"], i["key"]))


# -- configuration drift ---------------------------------------------------------------------------
def _manifests(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    files = [p for p in sorted(path.rglob("*")) if p.suffix in (".yaml", ".yml") and ".git" not in p.parts]
    for p in files[:MAX_MANIFESTS]:
        try:
            docs = list(yaml.safe_load_all(p.read_text(errors="replace")))
        except (yaml.YAMLError, OSError):
            continue
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "Deployment" and isinstance(d.get("metadata"), dict):
                meta, spec = d["metadata"], d.get("spec") if isinstance(d.get("spec"), dict) else {}
                tpl = ((spec.get("template") or {}).get("spec") or {}) if isinstance(spec.get("template"), dict) else {}
                images = {str(c.get("name")): str(c.get("image")) for c in tpl.get("containers") or []
                          if isinstance(c, dict)}
                out[(str(meta.get("namespace") or "default"), str(meta.get("name")))] = {
                    "replicas": spec.get("replicas"), "images": images, "file": str(p.relative_to(path))}
    return out


def _cfn_templates(path: Path) -> dict[str, dict[str, Any]]:
    """CloudFormation templates in a repository, by stack name (the file's name without its suffix)."""
    from vigil.sources.cloudwatch import _CfnLoader
    out: dict[str, dict[str, Any]] = {}
    files = [p for p in sorted(path.rglob("*")) if p.suffix in (".yaml", ".yml", ".json", ".template")
             and ".git" not in p.parts]
    for p in files[:MAX_MANIFESTS]:
        try:
            text = p.read_text(errors="replace")
            body = json.loads(text) if p.suffix == ".json" else yaml.load(text, Loader=_CfnLoader)  # noqa: S506
        except (ValueError, yaml.YAMLError, OSError):
            continue
        res = body.get("Resources") if isinstance(body, dict) else None
        if isinstance(res, dict) and any(isinstance(r, dict) and str(r.get("Type", "")).startswith(("AWS::", "Custom::"))
                                         for r in res.values()):
            out[p.stem] = {"resources": res, "file": str(p.relative_to(path))}
    return out


def _cfn_drift(repos: list[Any], accounts: list[Any]) -> list[dict[str, Any]]:
    from vigil.sources.cloudwatch import _CfnLoader
    declared: dict[str, dict[str, Any]] = {}
    for r in repos:
        declared.update(_cfn_templates(Path(r.config.path)))
    items = []
    for acc in accounts:
        try:
            stacks = acc._stack_names()
        except Exception as exc:   # noqa: BLE001 - an account away: no drift can be said
            log.info("drift: cannot list stacks of %s: %s", acc.name, exc)
            continue
        for stack in stacks:
            want = declared.get(stack)
            if want is None:
                continue
            try:
                body = acc._call("cloudformation", "get_template", StackName=stack,
                                 TemplateStage="Original").get("TemplateBody")
                if isinstance(body, str):
                    try:
                        body = json.loads(body)
                    except ValueError:
                        body = yaml.load(body, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
            except Exception as exc:   # noqa: BLE001
                log.info("drift: cannot read the template of %s: %s", stack, exc)
                continue
            live = (body or {}).get("Resources") or {} if isinstance(body, dict) else {}
            diffs = []
            for lid in sorted(set(want["resources"]) | set(live)):
                a, b = want["resources"].get(lid), live.get(lid)
                if b is None:
                    diffs.append(f"{lid} is in git, not in the stack")
                elif a is None:
                    diffs.append(f"{lid} runs in the stack, not in git")
                elif a.get("Type") != b.get("Type"):
                    diffs.append(f"{lid} is {a.get('Type')} in git, {b.get('Type')} in the stack")
                elif a.get("Properties") != b.get("Properties"):
                    keys = sorted(k for k in set(a.get("Properties") or {}) | set(b.get("Properties") or {})
                                  if (a.get("Properties") or {}).get(k) != (b.get("Properties") or {}).get(k))
                    diffs.append(f"{lid} properties differ: {', '.join(keys[:6])}")
            if diffs:
                items.append(_item(f"drift:stack/{stack}", "config-drift",
                                   f"stack {stack} differs from {want['file']}",
                                   "; ".join(diffs[:10]) + ": the next deploy of the template changes the stack",
                                   3, 3, 4, []))
    return items


def drift(service: Any, space: str) -> list[dict[str, Any]]:
    """Kubernetes manifests and CloudFormation templates in the space's git sources against its Kubernetes
    sources' live Deployments and its CloudWatch sources' stacks."""
    try:
        conns, _ = service.sources.connectors(space)
    except Exception:   # noqa: BLE001
        return []
    repos = [c for c in conns if c.kind == "git"]
    clusters = [c for c in conns if c.kind == "kubernetes"]
    accounts = [c for c in conns if c.kind == "cloudwatch"]
    if not repos:
        return []
    cfn = _cfn_drift(repos, accounts) if accounts else []
    if not clusters:
        return cfn
    declared: dict[tuple[str, str], dict[str, Any]] = {}
    for r in repos:
        declared.update(_manifests(Path(r.config.path)))
    items = []
    for k in clusters:
        try:
            live = k._list("list_namespaced_deployment", "list_deployment_for_all_namespaces", "deployments",
                           api="apps")
        except Exception as exc:   # noqa: BLE001 - a cluster away: no drift can be said
            log.info("drift: cannot list deployments of %s: %s", k.name, exc)
            continue
        for d in live:
            key = (d.metadata.namespace, d.metadata.name)
            want = declared.get(key)
            if want is None:
                continue
            diffs = []
            if want["replicas"] is not None and d.spec.replicas != want["replicas"]:
                diffs.append(f"replicas {want['replicas']} in git, {d.spec.replicas} live")
            live_images = {c.name: c.image for c in d.spec.template.spec.containers or []}
            for name, img in want["images"].items():
                if name in live_images and live_images[name] != img:
                    diffs.append(f"container {name}: {img} in git, {live_images[name]} live")
            if diffs:
                items.append(_item(f"drift:{key[0]}/{key[1]}", "config-drift",
                                   f"deployment {key[0]}/{key[1]} differs from {want['file']}",
                                   "; ".join(diffs) + ": the next sync or redeploy changes production unannounced",
                                   3, 3, 4, []))
    return items + cfn


def refresh(service: Any, space: str, actor: str) -> list[dict[str, Any]]:
    service.state.get_space(space)
    items = analyse(service, space)
    out = service.store.upsert_backlog(space, items)
    service.store_audit(space, actor, "prevention-refresh", space, {"items": len(items)})
    return out
