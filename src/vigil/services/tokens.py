"""API tokens: create (the secret is returned once), list, revoke, resolve."""

from __future__ import annotations

from typing import Any

from vigil.model import ApiToken, Role
from vigil.services.hooks import Hooks


class TokenService:
    def __init__(self, store: Any, hooks: Hooks) -> None:
        self.store = store
        self.hooks = hooks

    def create(self, space: str, role: Role, name: str, actor: str) -> tuple[str, ApiToken]:
        with self.store.uow() as u:
            u.spaces.get(space)
            secret, tok = u.tokens.add(space, role, name=name, created_by=actor)
            u.audit.add(actor, "token-create", space, tok.id, {"role": tok.role.value})
        return secret, tok

    def list(self, space: str) -> list[ApiToken]:
        with self.store.read() as u:
            u.spaces.get(space)
            return u.tokens.list(space)

    def revoke(self, token_id: str, actor: str, space: str | None = None) -> ApiToken:
        """Revoke a token (of ``space``, when given: another space's token is not found)."""
        with self.store.uow() as u:
            tok = u.tokens.revoke(token_id, space)
            u.audit.add(actor, "token-revoke", tok.space_id, tok.id)
        self.hooks.tokens_changed()
        return tok

    def resolve(self, secret: str) -> ApiToken | None:
        """The live token a secret belongs to, or None (no cache: see the server's ``TokenCache``)."""
        with self.store.read() as u:
            return u.tokens.by_secret(secret)

    def live(self, token_id: str) -> ApiToken | None:
        """The live token with this id (a console session names its token by id), or None."""
        with self.store.read() as u:
            return u.tokens.live(token_id)
