"""``kubernetes-rollout-undo``: roll a Deployment back to a previous revision, as ``kubectl rollout undo``
does (k8s.io/kubectl/pkg/polymorphichelpers/rollback.go): find the ReplicaSet of the target revision
(``deployment.kubernetes.io/revision``; default the one before the current), and replace the
Deployment's ``spec.template`` with that ReplicaSet's template (without its ``pod-template-hash`` label)
in one JSON patch; the Deployment controller then rolls it out."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from vigil.respond.actions import kubernetes as k8s
from vigil.respond.actions.base import Action, ActionContext, ActionError, ActionResult

REVISION = "deployment.kubernetes.io/revision"


class Args(k8s.DeploymentArgs):
    to_revision: int | None = Field(default=None, ge=1, le=10**9, description="Default: the previous revision.")


class RolloutUndo(Action):
    kind: ClassVar[str] = "kubernetes-rollout-undo"
    title: ClassVar[str] = "Kubernetes rollout undo"
    Args = Args
    Config = k8s.K8sActionConfig

    def describe(self, args: Args) -> str:
        to = f"revision {args.to_revision}" if args.to_revision else "its previous revision"
        return f"roll deployment {args.namespace}/{args.deployment} back to {to}"

    def guard(self) -> None:
        k8s.guard(self.config)

    def check_args(self, args: Args) -> None:
        k8s.check_namespace(self.config, args)

    def run(self, args: Args, ctx: ActionContext) -> ActionResult:
        api, conn = k8s.apps(self.config)
        try:
            dep = k8s.call(conn, api.read_namespaced_deployment, f"deployment {args.namespace}/{args.deployment}",
                           name=args.deployment, namespace=args.namespace)
            current = int((dep.metadata.annotations or {}).get(REVISION, "0") or 0)
            labels = (dep.spec.selector.match_labels or {}) if dep.spec.selector else {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            rsets = k8s.call(conn, api.list_namespaced_replica_set, "replica sets", namespace=args.namespace,
                             label_selector=selector).items
            owned = {}
            for rs in rsets:
                if any(o.kind == "Deployment" and o.name == args.deployment for o in rs.metadata.owner_references or []):
                    rev = (rs.metadata.annotations or {}).get(REVISION, "")
                    if rev.isdigit():
                        owned[int(rev)] = rs
            target = args.to_revision or max((r for r in owned if r < current), default=None)
            if target is None or target not in owned:
                raise ActionError(f"deployment {args.namespace}/{args.deployment} has no revision "
                                  f"{args.to_revision or 'before ' + str(current)} to roll back to")
            if target == current:
                return ActionResult(ok=True, message=f"already at revision {target}: nothing to roll back",
                                    detail={"revision": target})
            template = api.api_client.sanitize_for_serialization(owned[target].spec.template)
            (template.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
            k8s.call(conn, api.patch_namespaced_deployment, f"deployment {args.namespace}/{args.deployment}",
                     name=args.deployment, namespace=args.namespace,
                     body=[{"op": "replace", "path": "/spec/template", "value": template}])
        finally:
            conn.close()
        return ActionResult(ok=True, message=f"deployment {args.namespace}/{args.deployment} rolled back from "
                                             f"revision {current} to the template of revision {target}",
                            detail={"from_revision": current, "to_revision": target})
