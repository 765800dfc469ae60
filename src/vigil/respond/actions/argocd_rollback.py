"""``argocd-rollback``: roll an Argo CD application back to a history entry, through the API server's
``POST /api/v1/applications/{name}/rollback`` with an ``ApplicationRollbackRequest`` body (``name``,
``id``, ``dryRun``, ``prune``), as ``argocd app rollback APP ID`` does. Argo CD refuses it while the
application auto-syncs; its one-line answer is reported."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from vigil.respond.actions.base import (
    Action,
    ActionArgs,
    ActionConfig,
    ActionContext,
    ActionError,
    ActionResult,
)
from vigil.respond.http import HttpFailure, request
from vigil.sources.argocd import ArgoCDConfig


class Config(ActionConfig):
    server: dict[str, Any] = Field(description="How to reach Argo CD: an `argocd` source's config (url, token).")
    apps: list[str] = Field(default_factory=list, max_length=500, description="Applications it may roll back; "
                                                                                "empty: any.")

    @field_validator("server")
    @classmethod
    def _server(cls, v: dict[str, Any]) -> dict[str, Any]:
        ArgoCDConfig.model_validate(v)
        return v


class Args(ActionArgs):
    app: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    id: int = Field(ge=0, le=10**9, description="The history entry to roll back to.")
    prune: bool = False


class ArgoRollback(Action):
    kind: ClassVar[str] = "argocd-rollback"
    title: ClassVar[str] = "Argo CD rollback"
    Args = Args
    Config = Config

    def describe(self, args: Args) -> str:
        return f"roll Argo CD application {args.app} back to history {args.id}" + (" (pruning)" if args.prune else "")

    def guard(self) -> None:
        from vigil.sources import registry
        registry.guard_host_access("argocd", self.config.server)

    def check_args(self, args: Args) -> None:
        from vigil.errors import InputError
        if self.config.apps and args.app not in self.config.apps:
            raise InputError(f"application {args.app!r} is not one this space's actions may roll back")

    def run(self, args: Args, ctx: ActionContext) -> ActionResult:
        srv = ArgoCDConfig.model_validate(self.config.server)
        headers = {"Accept": "application/json"}
        try:
            if srv.token is not None:
                headers["Authorization"] = f"Bearer {srv.token.value()}"
            app = request("POST", f"{srv.url.rstrip('/')}/api/v1/applications/{args.app}/rollback", what="Argo CD",
                          timeout_s=self.config.timeout_s, allow_link_local=srv.allow_link_local, headers=headers,
                          json_body={"name": args.app, "id": args.id, "dryRun": False, "prune": args.prune})
        except HttpFailure as exc:
            raise ActionError(str(exc)) from None
        except Exception as exc:      # a credential reference that cannot be read
            raise ActionError(" ".join(str(exc).split())[:200]) from None
        phase = ((app.get("status") or {}).get("operationState") or {}).get("phase", "") if isinstance(app, dict) else ""
        return ActionResult(ok=True, message=f"Argo CD accepted the rollback of {args.app} to history {args.id}"
                                             + (f" (operation {phase})" if phase else ""), detail={"phase": phase})
