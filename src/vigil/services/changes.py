"""Change events from the change webhooks (GitHub, GitLab) into the space's embedded store: a
redelivery or a replayed delivery adds nothing; every delivery is audited."""

from __future__ import annotations

from typing import Any

from vigil.integrations.changes import ChangeEvent, frame


def _key(resource: str, ts: float, kind: str, description: str) -> tuple:
    return resource, round(float(ts), 3), kind, description


class ChangeService:
    def __init__(self, app: Any) -> None:
        self.app = app

    def record(self, space: str, kind: str, events: list[ChangeEvent]) -> list[ChangeEvent]:
        """Store the changes the space does not hold yet; returns what was stored. (The telemetry store
        is another database than the audit log's: the audit entry is written after the changes.)"""
        tel = self.app.telemetry
        fresh: list[ChangeEvent] = []
        if events:
            lo, hi = min(e.ts for e in events), max(e.ts for e in events)
            have = tel.changes(space, lo, hi + 1.0)
            seen = {_key(*r) for r in zip(have["resource"], have["ts"], have["kind"], have["description"],
                                          strict=True)}
            for e in events:
                k = _key(e.resource, e.ts, e.kind, e.description)
                if k not in seen:
                    seen.add(k)
                    fresh.append(e)
            if fresh:
                with tel.transaction() as w:
                    w.changes(space, frame(fresh))
        with self.app.state.uow() as u:
            u.audit.add(f"{kind} (signed)", "changes", space, kind,
                        {"changes": len(fresh), "duplicates": len(events) - len(fresh),
                         "resources": sorted({e.resource for e in fresh})[:20]})
        return fresh
