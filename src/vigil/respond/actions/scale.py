"""``kubernetes-scale``: set a Deployment's replica count through its ``scale`` subresource (a merge patch
of ``spec.replicas``, as ``kubectl scale`` does)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from vigil.respond.actions import kubernetes as k8s
from vigil.respond.actions.base import Action, ActionContext, ActionResult


class Args(k8s.DeploymentArgs):
    replicas: int = Field(ge=0, le=100)


class Scale(Action):
    kind: ClassVar[str] = "kubernetes-scale"
    title: ClassVar[str] = "Kubernetes scale"
    Args = Args
    Config = k8s.K8sActionConfig

    def describe(self, args: Args) -> str:
        return f"scale deployment {args.namespace}/{args.deployment} to {args.replicas} replicas"

    def guard(self) -> None:
        k8s.guard(self.config)

    def check_args(self, args: Args) -> None:
        k8s.check_namespace(self.config, args)

    def run(self, args: Args, ctx: ActionContext) -> ActionResult:
        api, conn = k8s.apps(self.config)
        try:
            before = k8s.call(conn, api.read_namespaced_deployment_scale, "the deployment's scale",
                              name=args.deployment, namespace=args.namespace)
            k8s.call(conn, api.patch_namespaced_deployment_scale, "the deployment's scale", name=args.deployment,
                     namespace=args.namespace, body={"spec": {"replicas": args.replicas}})
        finally:
            conn.close()
        was = before.spec.replicas if before.spec else None
        return ActionResult(ok=True, message=f"deployment {args.namespace}/{args.deployment} scaled from {was} to "
                                             f"{args.replicas} replicas", detail={"from": was, "to": args.replicas})
