"""Change feed: which investigations changed, so live journal streams wake at once instead of
polling the database (they still re-read it now and then, for changes made by other processes)."""

from __future__ import annotations

import threading


class ChangeFeed:
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def touch(self, inv_id: str) -> None:
        with self._lock:
            self._versions[inv_id] = self._versions.get(inv_id, 0) + 1
            if len(self._versions) > 100_000:           # bounded: forget the oldest half
                for k in list(self._versions)[:50_000]:
                    del self._versions[k]

    def version(self, inv_id: str) -> int:
        return self._versions.get(inv_id, 0)
