"""Agent Spaces."""

from __future__ import annotations

from sqlalchemy import select

from vigil.errors import NotFound
from vigil.model import AgentSpace
from vigil.store.repos.common import Repo, utc
from vigil.store.tables import SpaceRow

_CONFIG = {"services", "sources", "integrations", "policies", "alerting"}


class SpaceRepo(Repo):
    @staticmethod
    def _space(row: SpaceRow) -> AgentSpace:
        return AgentSpace(id=row.id, name=row.name, description=row.description, created_at=utc(row.created_at),
                          **row.config)

    def put(self, space: AgentSpace) -> AgentSpace:
        config = space.model_dump(mode="json", include=_CONFIG)
        row = self.s.get(SpaceRow, space.id)
        if row is None:
            self.s.add(SpaceRow(id=space.id, name=space.name or space.id, description=space.description,
                                config=config, created_at=space.created_at))
        else:
            row.name, row.description, row.config = space.name or space.id, space.description, config
        return space

    def get(self, space_id: str, *, lock: bool = False) -> AgentSpace:
        """The space; with ``lock`` its row stays locked until the transaction ends (this serialises
        writers to one space, e.g. alert deliveries)."""
        row = self.s.get(SpaceRow, space_id, with_for_update=lock or None)
        if row is None:
            raise NotFound(f"no space named {space_id!r}")
        return self._space(row)

    def exists(self, space_id: str) -> bool:
        return self.s.get(SpaceRow, space_id) is not None

    def ids(self) -> list[str]:
        return list(self.s.scalars(select(SpaceRow.id).order_by(SpaceRow.id)).all())

    def list(self) -> list[AgentSpace]:
        return [self._space(r) for r in self.s.scalars(select(SpaceRow).order_by(SpaceRow.id)).all()]
