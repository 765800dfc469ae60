"""The append-only audit log (there is no update or delete)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from vigil.store.repos.common import Repo, utc
from vigil.store.tables import AuditRow


class AuditRepo(Repo):
    def add(self, actor: str, action: str, space_id: str | None = None, target: str = "",
            detail: dict[str, Any] | None = None) -> None:
        self.s.add(AuditRow(ts=datetime.now(UTC), actor=actor[:200], action=action, space_id=space_id,
                            target=target[:200], detail=detail or {}))

    def log(self, space_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if space_id:
            q = q.where(AuditRow.space_id == space_id)
        return [{"ts": utc(r.ts), "actor": r.actor, "action": r.action, "space_id": r.space_id,
                 "target": r.target, "detail": r.detail} for r in self.s.scalars(q).all()]
