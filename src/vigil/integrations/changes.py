"""What the change webhooks (GitHub, GitLab) share: the change event they produce and how a
repository (and environment) becomes the service the engine ranks.

A change event is one row of the ``changes`` frame: (resource, ts, kind, description, author, detail);
``detail`` is a JSON object (as text) with what the delivery says besides: repository, revision,
environment, and the keys the change touched when the sender lists them.
Deliveries are untrusted: every text is cut to a bounded length and times must parse."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from vigil.frames import FRAME_COLUMNS
from vigil.integrations.common import WebhookRejected, parse_time

MAX_TEXT = 300


@dataclass
class ChangeEvent:
    resource: str
    ts: float
    kind: str
    description: str
    author: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame(events: list[ChangeEvent]) -> pd.DataFrame:
    return pd.DataFrame([e.as_dict() for e in events], columns=FRAME_COLUMNS["changes"])


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """One line of at most ``limit`` characters (None and non-strings become text or nothing)."""
    if value is None or isinstance(value, dict | list):
        return ""
    return " ".join(str(value).split())[:limit]


def detail(**fields: Any) -> str:
    """The ``detail`` JSON of a change: the given fields that have a value, texts bounded."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, list):
            v = [text(x, 200) for x in v[:50] if text(x, 200)]
        elif v is not None and not isinstance(v, int | float | bool):
            v = text(v)
        if v not in (None, "", []):
            out[k] = v
    return json.dumps(out, sort_keys=True) if out else ""


def changed_keys(payload: Any) -> list[str]:
    """Keys a deploy says it changed: ``payload.changed_keys`` (a list of names) when the sender
    puts it in the deployment's free-form payload (GitHub ``deployment.payload``)."""
    keys = payload.get("changed_keys") if isinstance(payload, dict) else None
    return [k for k in keys[:50] if isinstance(k, str)] if isinstance(keys, list) else []


def obj(payload: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = payload.get(key)
    if not isinstance(v, dict):
        raise WebhookRejected(f"{where}{key} must be an object")
    return v


def service_for(services: dict[str, str], repo_full: str, repo_name: str, environment: str = "") -> str:
    """The service a repository's change is about. ``services`` keys (first match wins, case-insensitive):
    ``owner/repo:environment``, ``owner/repo``, ``repo:environment``, ``repo``; then the repository's
    own name (a repository per service is the common layout)."""
    lowered = {k.lower(): v for k, v in (services or {}).items()}
    keys = []
    for repo in (repo_full, repo_name):
        if repo and environment:
            keys.append(f"{repo}:{environment}")
        if repo:
            keys.append(repo)
    for k in keys:
        hit = lowered.get(k.lower())
        if hit:
            return text(hit, 200)
    return text(repo_name or repo_full.rsplit("/", 1)[-1], 200)


def when(value: Any, field: str) -> float:
    """Epoch seconds of an RFC 3339 time, or of GitLab's ``2021-04-28 21:50:00 +0200`` and
    ``2016-08-12 15:23:28 UTC`` forms."""
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?) ?(UTC|[+-]\d{2}:?\d{2})?", value.strip())
        if m:
            zone = m.group(3) or "UTC"
            value = f"{m.group(1)}T{m.group(2)}" + ("Z" if zone == "UTC" else zone)
    dt = parse_time(value, field)
    if dt is None:
        raise WebhookRejected(f"{field} is missing")
    return dt.timestamp()


def now() -> float:
    return datetime.now(UTC).timestamp()


def matches(name: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), g.lower()) for g in globs)
