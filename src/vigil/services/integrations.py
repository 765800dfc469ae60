"""A space's webhook integrations (signed alert triggers and change webhooks): configure, list, delete,
and the secret a delivery is verified with."""

from __future__ import annotations

from typing import Any

from vigil.errors import InputError, Unprocessable
from vigil.hostaccess import check_secret_env
from vigil.integrations.common import resolve_secret

SIGNED = ("pagerduty", "generic", "grafana", "github", "gitlab")


class IntegrationService:
    def __init__(self, store: Any) -> None:
        self.store = store

    def list(self, space: str) -> list[dict[str, Any]]:
        with self.store.read() as u:
            return u.integrations.list(space)

    def put(self, space: str, kind: str, config: dict[str, Any], secret: str | None, secret_env: str | None,
            actor: str) -> dict[str, Any]:
        """Configure a signed webhook trigger; the secret is stored (or named by ``secret_env``, which
        passes the rule sources follow) and never audited or shown again."""
        if kind == "alertmanager":
            raise InputError("Alertmanager authenticates with a space token (http_config.authorization); "
                             "there is nothing to configure")
        if secret and secret_env:
            raise InputError("give either secret or secret_env, not both")
        if kind in SIGNED and not (secret or secret_env):
            raise InputError(f"a {kind} integration needs a secret (or secret_env)")
        if kind == "sns" and not config.get("topic_arns"):
            raise InputError("an sns integration needs config.topic_arns: the topics the space accepts")
        config = dict(config)
        if secret_env:
            try:
                check_secret_env(secret_env, "secret_env")
            except InputError as exc:
                raise Unprocessable(str(exc)) from None
            config["secret_env"] = secret_env
        with self.store.uow() as u:
            u.spaces.get(space)
            u.integrations.put(space, kind, config, secret)
            u.audit.add(actor, "integration-put", space, kind)          # never the secret
            return next(i for i in u.integrations.list(space) if i["kind"] == kind)

    def delete(self, space: str, kind: str, actor: str) -> None:
        with self.store.uow() as u:
            u.integrations.delete(space, kind)
            u.audit.add(actor, "integration-delete", space, kind)

    def check_secret_key(self) -> None:
        """Fail now (one line) when the key that encrypts stored secrets is missing, malformed or does not
        open them (``vigil.store.crypto``)."""
        self.store.check_secret_key()

    def config(self, space: str, kind: str) -> tuple[dict[str, Any], str | None] | None:
        """(config, the secret a delivery is verified with) of a configured integration, else None."""
        with self.store.read() as u:
            got = u.integrations.get(space, kind)
        if got is None:
            return None
        config, stored = got
        return config, resolve_secret(config, stored)
