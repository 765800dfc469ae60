"""``webhook``: POST a signed JSON request to a deployer the space configured (its own rollback or restart
endpoint). Signed as Vigil's generic trigger is verified: ``X-Vigil-Timestamp: <unix seconds>`` and
``X-Vigil-Signature: sha256=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))``; the receiver checks the
signature and the timestamp. The URL is the space's config, never an argument: an approval cannot send
a request anywhere else."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import ClassVar

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
from vigil.sources.connector import SecretRef
from vigil.sources.safety import check_url


def sign(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    t = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Vigil-Timestamp": t, "X-Vigil-Signature": f"sha256={mac}"}


class Config(ActionConfig):
    url: str = Field(min_length=1, max_length=2000)
    secret: SecretRef
    allow_link_local: bool = False
    operations: list[str] = Field(default_factory=lambda: ["rollback", "restart"], max_length=20)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return v

    def model_post_init(self, _ctx) -> None:
        check_url(self.url, allow_link_local=self.allow_link_local)


class Args(ActionArgs):
    operation: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")
    service: str = Field(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
    params: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k.isidentifier() or len(k) > 60 or len(val) > 300:
                raise ValueError("params are up to 20 identifier keys with values of at most 300 characters")
        return v


class Webhook(Action):
    kind: ClassVar[str] = "webhook"
    title: ClassVar[str] = "Signed webhook"
    Args = Args
    Config = Config

    def describe(self, args: Args) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(args.params.items()))
        return f"ask the deployer to {args.operation} {args.service}" + (f" ({extra})" if extra else "")

    def guard(self) -> None:
        from vigil.errors import InputError
        from vigil.hostaccess import check_secret_env
        ref = self.config.secret
        if ref.env is not None:
            check_secret_env(ref.env)
        if ref.file is not None:
            raise InputError("a webhook action's secret comes from an environment variable over the API")

    def check_args(self, args: Args) -> None:
        from vigil.errors import InputError
        if args.operation not in self.config.operations:
            raise InputError(f"operation {args.operation!r} is not one this space's webhook accepts "
                             f"({', '.join(self.config.operations)})")

    def run(self, args: Args, ctx: ActionContext) -> ActionResult:
        body = json.dumps({"operation": args.operation, "service": args.service, "params": args.params,
                           "space": ctx.space, "investigation": ctx.investigation_id, "action": ctx.action_id,
                           "approved_by": ctx.approved_by}, sort_keys=True).encode()
        try:
            secret = self.config.secret.value()
        except Exception as exc:
            raise ActionError(" ".join(str(exc).split())[:200]) from None
        try:
            answer = request("POST", self.config.url, what="the deployer webhook", timeout_s=self.config.timeout_s,
                             allow_link_local=self.config.allow_link_local, content=body,
                             headers={"Content-Type": "application/json", **sign(secret, body)})
        except HttpFailure as exc:
            raise ActionError(str(exc)) from None
        shown = {k: v for k, v in answer.items() if isinstance(v, str | int | float | bool)} if isinstance(answer, dict) \
            else {}
        return ActionResult(ok=True, message=f"the deployer accepted: {self.describe(args)}",
                            detail={"answer": {k: str(v)[:200] for k, v in list(shown.items())[:10]}})
