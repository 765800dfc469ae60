"""What the console's pages read that the REST layer does not: one page of investigations by keyset
(no OFFSET scan however deep the page), their top hypothesis in one query, per-space status counts, the
active investigations and the recent alert feed. Each is a bounded query (``store.repos.overview``), so
the dashboard stays fast with thousands of investigations."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vigil.model import InvestigationStatus


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass
class InvRow:
    id: str
    status: str
    created_at: datetime
    onset: datetime
    trigger: str
    summary: str
    top: dict[str, Any] | None = None


def encode_cursor(created_at: datetime, inv_id: str) -> str:
    raw = f"{_utc(created_at).isoformat()}|{inv_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (created_at, id) a page continues after; None for a missing or malformed cursor."""
    if not cursor or len(cursor) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, inv_id = raw.partition("|")
        return _utc(datetime.fromisoformat(at)), inv_id[:80]
    except (ValueError, UnicodeDecodeError):
        return None


def _trigger(t: dict[str, Any]) -> str:
    alert = t.get("alert") or {}
    if t.get("kind") == "alert":
        return f"alert: {alert.get('title') or alert.get('id') or '?'}"
    point = t.get("starting_point") or "manual"
    return f"{point}" + (f": {t['text']}" if t.get("text") else "")


def _inv_row(r: dict[str, Any]) -> InvRow:
    return InvRow(id=r["id"], status=r["status"], created_at=r["created_at"], onset=r["onset"],
                  trigger=_trigger(r["trigger"]), summary=r["summary"])


class ConsoleService:
    def __init__(self, store: Any) -> None:
        self.store = store

    def investigations_page(self, space: str, limit: int = 25, after: tuple[datetime, str] | None = None,
                            status: InvestigationStatus | None = None) -> tuple[list[InvRow], str | None]:
        """Newest first, ``limit`` rows after the cursor, with each one's top hypothesis. Returns the rows
        and the cursor of the next page (None on the last page)."""
        with self.store.read() as u:
            rows, more = u.overview.investigations_page(space, limit, after, status)
            out = [_inv_row(r) for r in rows]
            tops = u.overview.top_hypotheses([r.id for r in out])
        for r in out:
            r.top = tops.get(r.id)
        nxt = encode_cursor(out[-1].created_at, out[-1].id) if more and out else None
        return out, nxt

    def active_investigations(self, space: str, limit: int = 10) -> list[InvRow]:
        with self.store.read() as u:
            return [_inv_row(r) for r in u.overview.active(space, limit)]

    def status_counts(self, space: str) -> dict[str, int]:
        with self.store.read() as u:
            return u.overview.status_counts(space)

    def alert_feed(self, space: str, limit: int = 15) -> list[dict[str, Any]]:
        """The alerts most recently received in the space, newest first, with their incident."""
        with self.store.read() as u:
            return u.overview.alert_feed(space, limit)
