"""The directed-action interface. An action changes an external system, so it is off by default: a
space opts in per kind (with the kind's config), every run needs an operator's approval (a single-use
token bound to the action and its exact arguments, see ``store.respond``), and the approver, the action
and its result go to the journal and the audit log.

An action kind is a class with ``kind``, ``Args`` (the exact arguments, validated: a pydantic model that
forbids anything else), ``Config`` (the space's settings: endpoints, credential references) and
``run(args, context) -> ActionResult``; registered by one line in ``respond.actions``."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class ActionError(Exception):
    """The action could not run (one line, safe to show: no credential, no backend body)."""


class ActionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(default=20.0, gt=0, le=300)
    verify_for_s: float = Field(default=60.0, ge=5, le=3600, description="After the action, recovery must hold "
                                                                          "this long (the spec's verify step).")
    verify_timeout_s: float = Field(default=600.0, ge=10, le=7200, description="Give up checking after this long.")


class ActionContext(BaseModel):
    """What an action may say about why it runs (pull-request text, a webhook's payload)."""

    space: str
    investigation_id: str
    action_id: str
    approved_by: str
    summary: str = ""
    cause: str = ""


class ActionResult(BaseModel):
    ok: bool
    message: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Action:
    kind: ClassVar[str]
    title: ClassVar[str]
    Args: ClassVar[type[ActionArgs]]
    Config: ClassVar[type[ActionConfig]]

    def __init__(self, config: ActionConfig) -> None:
        self.config = config

    def describe(self, args: ActionArgs) -> str:
        raise NotImplementedError

    def guard(self) -> None:
        """Refuse (``InputError``) a config a space admin may not register over the API (host access)."""

    def check_args(self, args: ActionArgs) -> None:
        """Refuse (``InputError``) arguments this space's config does not allow (e.g. another namespace)."""

    def run(self, args: ActionArgs, ctx: ActionContext) -> ActionResult:
        raise NotImplementedError


def args_hash(kind: str, args: ActionArgs | dict[str, Any]) -> str:
    """sha256 of the kind and the canonical JSON of the exact arguments: what an approval is bound to."""
    data = args.model_dump(mode="json") if isinstance(args, BaseModel) else args
    return hashlib.sha256(json.dumps([kind, data], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
