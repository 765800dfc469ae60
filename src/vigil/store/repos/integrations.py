"""A space's webhook integrations (alert triggers and change webhooks) and their secrets, stored encrypted
(``vigil.store.crypto``: sealed on the way in, opened on the way out)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.errors import NotFound
from vigil.store.repos.common import Repo, utc
from vigil.store.tables import IntegrationRow


class IntegrationRepo(Repo):
    def __init__(self, session: Session, sealer: Callable[[], Any] | None = None) -> None:
        super().__init__(session)
        self._sealer = sealer

    def _sealed(self) -> Any:
        if self._sealer is None:
            raise RuntimeError("this unit of work cannot read or write secrets (no sealer)")
        return self._sealer()

    def put(self, space_id: str, kind: str, config: dict[str, Any], secret: str | None) -> None:
        """``secret`` is stored encrypted."""
        if secret:
            secret = self._sealed().seal(secret)
        row = self.s.get(IntegrationRow, (space_id, kind))
        if row is None:
            self.s.add(IntegrationRow(space_id=space_id, kind=kind, config=config, secret=secret,
                                      updated_at=datetime.now(UTC)))
        else:
            row.config, row.secret, row.updated_at = config, secret, datetime.now(UTC)

    def get(self, space_id: str, kind: str) -> tuple[dict[str, Any], str | None] | None:
        """(config, stored secret) of a space's integration, or None when not configured."""
        row = self.s.get(IntegrationRow, (space_id, kind))
        if row is None:
            return None
        return dict(row.config or {}), (self._sealed().open(row.secret) if row.secret else row.secret)

    def a_sealed_secret(self) -> str | None:
        """One stored (encrypted) secret, to check the key opens it; None when there is none."""
        return self.s.scalars(select(IntegrationRow.secret).where(IntegrationRow.secret.like("fernet:%"))
                              .limit(1)).first()

    def list(self, space_id: str) -> list[dict[str, Any]]:
        rows = self.s.scalars(select(IntegrationRow).where(IntegrationRow.space_id == space_id)
                              .order_by(IntegrationRow.kind)).all()
        return [{"kind": r.kind, "config": r.config or {}, "secret_set": bool(r.secret),
                 "updated_at": utc(r.updated_at)} for r in rows]

    def delete(self, space_id: str, kind: str) -> None:
        row = self.s.get(IntegrationRow, (space_id, kind))
        if row is None:
            raise NotFound(f"no {kind} integration in space {space_id!r}")
        self.s.delete(row)
