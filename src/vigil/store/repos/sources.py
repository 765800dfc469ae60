"""A space's registered sources (connectors) and the outcome of their last check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from vigil.errors import NotFound
from vigil.store.repos.common import Repo, utc
from vigil.store.tables import SourceRow

Check = tuple[bool, str] | None


class SourceRepo(Repo):
    @staticmethod
    def _source(r: SourceRow) -> dict[str, Any]:
        last = None if r.last_check_at is None else {
            "at": utc(r.last_check_at), "ok": bool(r.last_check_ok), "message": r.last_check_message or ""}
        return {"name": r.name, "kind": r.kind, "config": r.config or {}, "created_at": utc(r.created_at),
                "last_check": last}

    def put_many(self, space_id: str, rows: list[tuple[str, str, dict[str, Any], Check]],
                 prune: bool = False) -> list[dict[str, Any]]:
        """Create or replace sources; ``check`` (ok, message) records the check made before storing one
        (a replaced source without one loses its old check: it described another config). With ``prune``
        the space's sources not listed are removed."""
        now = datetime.now(UTC)
        out = []
        if prune:
            keep = {r[0] for r in rows}
            for old in self.s.scalars(select(SourceRow).where(SourceRow.space_id == space_id)).all():
                if old.name not in keep:
                    self.s.delete(old)
        for name, kind, config, check in rows:
            row = self.s.get(SourceRow, (space_id, name))
            if row is None:
                row = SourceRow(space_id=space_id, name=name, kind=kind, config=config, created_at=now)
                self.s.add(row)
            else:
                row.kind, row.config = kind, config
            row.last_check_at = now if check else None
            row.last_check_ok = check[0] if check else None
            row.last_check_message = check[1][:2000] if check else None
            out.append(self._source(row))
        return out

    def record_check(self, space_id: str, name: str, ok: bool, message: str,
                     at: datetime | None = None) -> dict[str, Any]:
        row = self.s.get(SourceRow, (space_id, name))
        if row is None:
            raise NotFound(f"no source {name!r} in space {space_id!r}")
        row.last_check_at, row.last_check_ok = at or datetime.now(UTC), ok
        row.last_check_message = message[:2000]
        return self._source(row)

    def get(self, space_id: str, name: str) -> dict[str, Any]:
        row = self.s.get(SourceRow, (space_id, name))
        if row is None:
            raise NotFound(f"no source {name!r} in space {space_id!r}")
        return self._source(row)

    def list(self, space_id: str) -> list[dict[str, Any]]:
        """[{name, kind, config, created_at, last_check: {at, ok, message} | None}] by name."""
        rows = self.s.scalars(select(SourceRow).where(SourceRow.space_id == space_id).order_by(SourceRow.name)).all()
        return [self._source(r) for r in rows]

    def delete(self, space_id: str, name: str) -> None:
        row = self.s.get(SourceRow, (space_id, name))
        if row is None:
            raise NotFound(f"no source {name!r} in space {space_id!r}")
        self.s.delete(row)
