"""A console sign-in: what both session stores keep (in the server's memory, or in the state database
when replicas share them), and the key they keep it under."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field


@dataclass
class ConsoleSession:
    csrf: str
    tokens: dict[str, str] = field(default_factory=dict)      # space -> token id
    created: float = field(default_factory=time.time)
    seen: float = field(default_factory=time.time)


def session_key(sid: str) -> str:
    """Sessions are keyed by a hash of the cookie: a dump of the memory or the table yields no live cookie."""
    return hashlib.sha256(sid.encode()).hexdigest()
