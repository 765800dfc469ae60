"""Directed actions: one file per kind, one line each in ``ACTIONS``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vigil.errors import InputError
from vigil.respond.actions.argocd_rollback import ArgoRollback
from vigil.respond.actions.base import Action, ActionArgs, ActionContext, ActionError, ActionResult, args_hash
from vigil.respond.actions.git_revert import GitRevert
from vigil.respond.actions.rollout_undo import RolloutUndo
from vigil.respond.actions.scale import Scale
from vigil.respond.actions.webhook import Webhook

ACTIONS: dict[str, type[Action]] = {
    RolloutUndo.kind: RolloutUndo,
    Scale.kind: Scale,
    GitRevert.kind: GitRevert,
    ArgoRollback.kind: ArgoRollback,
    Webhook.kind: Webhook,
}


def _one_line(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(x) for x in e.get("loc", ())) or "value"
    return f"{where}: {e.get('msg', 'invalid')}"


def kind_of(kind: str) -> type[Action]:
    cls = ACTIONS.get(kind)
    if cls is None:
        raise InputError(f"unknown action kind {kind[:40]!r} (one of {', '.join(ACTIONS)})")
    return cls


def build(kind: str, config: dict[str, Any]) -> Action:
    cls = kind_of(kind)
    try:
        return cls(cls.Config.model_validate(config))
    except ValidationError as exc:
        raise InputError(f"{kind} config: {_one_line(exc)}") from None
    except ValueError as exc:
        raise InputError(f"{kind} config: {' '.join(str(exc).split())[:200]}") from None


def parse_args(kind: str, args: dict[str, Any]) -> ActionArgs:
    cls = kind_of(kind)
    try:
        return cls.Args.model_validate(args)
    except ValidationError as exc:
        raise InputError(f"{kind} arguments: {_one_line(exc)}") from None


__all__ = ["ACTIONS", "Action", "ActionArgs", "ActionContext", "ActionError", "ActionResult", "args_hash", "build",
           "kind_of", "parse_args"]
