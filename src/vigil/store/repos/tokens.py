"""API tokens: only a sha256 of the secret is stored."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import select

from vigil.errors import NotFound
from vigil.model import ApiToken, Role
from vigil.store.repos.common import Repo, hash_token, new_id, utc
from vigil.store.tables import TokenRow


class TokenRepo(Repo):
    @staticmethod
    def _token(r: TokenRow) -> ApiToken:
        return ApiToken(id=r.id, space_id=r.space_id, role=Role(r.role), name=r.name, created_at=utc(r.created_at),
                        created_by=r.created_by, revoked_at=utc(r.revoked_at))

    def add(self, space_id: str, role: Role, name: str = "", created_by: str = "") -> tuple[str, ApiToken]:
        """Returns the secret (shown once; not recoverable) and the token's record."""
        secret = "vgl_" + secrets.token_urlsafe(32)
        row = TokenRow(id=new_id("tok"), space_id=space_id, role=Role(role).value, name=name[:200],
                       hash=hash_token(secret), created_at=datetime.now(UTC), created_by=created_by[:200])
        self.s.add(row)
        return secret, self._token(row)

    def by_secret(self, secret: str) -> ApiToken | None:
        """The live token a secret belongs to, or None."""
        if not secret or len(secret) > 200:
            return None
        row = self.s.scalar(select(TokenRow).where(TokenRow.hash == hash_token(secret)))
        if row is None or row.revoked_at is not None:
            return None
        return self._token(row)

    def live(self, token_id: str) -> ApiToken | None:
        """The live (not revoked) token with this id, or None."""
        row = self.s.get(TokenRow, token_id)
        if row is None or row.revoked_at is not None:
            return None
        return self._token(row)

    def list(self, space_id: str) -> list[ApiToken]:
        rows = self.s.scalars(select(TokenRow).where(TokenRow.space_id == space_id)
                              .order_by(TokenRow.created_at, TokenRow.id)).all()
        return [self._token(r) for r in rows]

    def revoke(self, token_id: str, space_id: str | None = None) -> ApiToken:
        row = self.s.get(TokenRow, token_id)
        if row is None or (space_id is not None and row.space_id != space_id):
            raise NotFound(f"no token {token_id!r}" + (f" in space {space_id!r}" if space_id else ""))
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
        return self._token(row)
