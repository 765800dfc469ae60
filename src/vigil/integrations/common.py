"""What every trigger shares: rejections, HMAC checks, secrets, times, label maps."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from vigil.errors import InputError, VigilError
from vigil.hostaccess import check_secret_env

KINDS = ("alertmanager", "grafana", "pagerduty", "sns", "generic", "github", "gitlab")
MAX_ALERTS = 5000          # per delivery (an Alertmanager group in a storm)
MAX_LABELS = 64
MAX_LABEL_CHARS = 1000


class WebhookRejected(VigilError):
    """A delivery refused: ``status`` is the HTTP status, ``reason`` a short label for metrics."""

    def __init__(self, message: str, status: int = 400, reason: str = "malformed") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected("the body is not valid JSON") from None


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise WebhookRejected(message)


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def resolve_secret(config: dict[str, Any], stored: str | None) -> str | None:
    """The integration's secret: the environment variable its config names, else the stored one. The
    variable must pass the same rule as a source's (``check_secret_env``), here too: a row stored before
    the rule, or with the prefixes narrowed since, does not read an arbitrary variable (it is treated as
    no secret, so its deliveries are refused)."""
    env = config.get("secret_env")
    if env:
        try:
            check_secret_env(str(env))
        except InputError:
            return None
        return os.environ.get(str(env)) or None
    return stored or None


def parse_time(value: Any, field: str) -> datetime | None:
    """RFC 3339 / ISO 8601 (any fraction digits), or None for empty and Go's zero time."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise WebhookRejected(f"{field} must be an RFC 3339 time string")
    text = value.strip().replace("Z", "+00:00")
    if "." in text:                                      # Go writes up to 9 fraction digits
        head, _, rest = text.partition(".")
        digits = re.match(r"\d*", rest).group()
        text = head + "." + (digits[:6] or "0") + rest[len(digits):]
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():   # +0000 -> +00:00
        text = text[:-2] + ":" + text[-2:]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise WebhookRejected(f"{field} {value[:40]!r} is not an RFC 3339 time") from None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return None if dt.year <= 1 else dt


def str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookRejected(f"{field} must be an object of strings")
    if len(value) > MAX_LABELS:
        raise WebhookRejected(f"{field} has more than {MAX_LABELS} entries")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise WebhookRejected(f"{field}.{str(k)[:40]} must be a string")
        out[str(k)[:200]] = ("" if v is None else str(v))[:MAX_LABEL_CHARS]
    return out


def labels_fingerprint(source: str, labels: dict[str, str]) -> str:
    text = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return f"{source}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


_RESOURCE_LABELS = ("service", "service_name", "service.name", "app", "application", "deployment", "container",
                    "job", "instance")


def resource_of(labels: dict[str, str]) -> str | None:
    for k in _RESOURCE_LABELS:
        if labels.get(k):
            return labels[k][:300]
    return None
