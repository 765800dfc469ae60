"""Agent Spaces: create, read, change; each change audited in its own transaction."""

from __future__ import annotations

from typing import Any

from vigil.errors import InputError
from vigil.model import AgentSpace


class SpaceService:
    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, space: str) -> AgentSpace:
        with self.store.read() as u:
            return u.spaces.get(space)

    def list(self) -> list[AgentSpace]:
        with self.store.read() as u:
            return u.spaces.list()

    def create(self, space_id: str, actor: str, description: str = "") -> AgentSpace:
        with self.store.uow() as u:
            if u.spaces.exists(space_id):
                raise InputError(f"space {space_id!r} already exists")
            space = u.spaces.put(AgentSpace(id=space_id, name=space_id, description=description,
                                            sources=["embedded"]))
            u.audit.add(actor, "space-create", space.id, space.id)
        return space

    def update(self, space: str, changes: dict[str, Any], actor: str) -> AgentSpace:
        """Change a space's description, scope, policies or alert grouping (``changes`` are fields of
        ``AgentSpace``; the result is validated as a whole)."""
        with self.store.uow() as u:
            current = u.spaces.get(space, lock=True)
            updated = AgentSpace.model_validate({**current.model_dump(), **changes})
            u.spaces.put(updated)
            u.audit.add(actor, "space-update", space, space, {"fields": sorted(changes)})
        return self.get(space)

    def imported(self, space: str, description: str, actor: str, target: str, dataset: str) -> AgentSpace:
        """Record the space a recording was imported into (created, or its description replaced)."""
        with self.store.uow() as u:
            out = u.spaces.put(AgentSpace(id=space, name=space, description=description, sources=["embedded"]))
            u.audit.add(actor, "import", space, target, {"dataset": dataset})
        return out
