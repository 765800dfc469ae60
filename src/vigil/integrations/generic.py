"""The generic webhook, for any tool that can sign a request. Headers:

    X-Vigil-Timestamp: <unix seconds>
    X-Vigil-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" under the space's secret>

A timestamp further than the tolerance (default 300 s) from the server's clock is a replay. Body:
one alert object, or ``{"alerts": [...]}``; each alert has ``title`` and optionally ``status``
(firing|resolved), ``at`` (RFC 3339), ``fingerprint``, ``resource``, ``metric``, ``labels``,
``annotations``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from vigil.integrations.common import (
    MAX_ALERTS,
    WebhookRejected,
    expect,
    hmac_sha256_hex,
    labels_fingerprint,
    parse_time,
    same,
    str_map,
)
from vigil.model import AlertStatus, IncomingAlert

SIGNATURE = "X-Vigil-Signature"
TIMESTAMP = "X-Vigil-Timestamp"


def sign(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    """The headers a sender adds (used by tests and handy for scripts)."""
    ts = int(time.time()) if ts is None else ts
    return {TIMESTAMP: str(ts), SIGNATURE: "sha256=" + hmac_sha256_hex(secret, f"{ts}.".encode() + body)}


def verify(body: bytes, signature: str | None, timestamp: str | None, secret: str, tolerance_s: float,
           now: float | None = None) -> None:
    if not signature or not timestamp:
        raise WebhookRejected(f"missing {SIGNATURE} or {TIMESTAMP} header", 401, "unsigned")
    try:
        ts = int(timestamp)
    except ValueError:
        raise WebhookRejected(f"{TIMESTAMP} must be unix seconds", 401, "bad-signature") from None
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        raise WebhookRejected(f"{TIMESTAMP} is more than {tolerance_s:g} s away from now (replay?)", 401, "stale")
    expected = "sha256=" + hmac_sha256_hex(secret, f"{ts}.".encode() + body)
    if not same(signature.strip(), expected):
        raise WebhookRejected(f"{SIGNATURE} does not match the body", 401, "bad-signature")


def parse(payload: Any) -> list[IncomingAlert]:
    if isinstance(payload, dict) and "alerts" in payload:
        items = payload["alerts"]
        expect(isinstance(items, list), "'alerts' must be a list")
    else:
        items = [payload]
    expect(0 < len(items) <= MAX_ALERTS, f"send 1 to {MAX_ALERTS} alerts")
    out = []
    for i, a in enumerate(items):
        expect(isinstance(a, dict), f"alert {i} must be an object")
        title = a.get("title")
        expect(isinstance(title, str) and 0 < len(title) <= 500, f"alert {i}: 'title' must be a string of 1-500 chars")
        status = a.get("status", "firing")
        expect(status in ("firing", "resolved"), f"alert {i}: 'status' must be 'firing' or 'resolved'")
        labels = str_map(a.get("labels"), f"alert {i}.labels")
        fp = a.get("fingerprint")
        expect(fp is None or (isinstance(fp, str) and 0 < len(fp) <= 150), f"alert {i}: bad 'fingerprint'")
        for key in ("resource", "metric"):
            expect(a.get(key) is None or (isinstance(a[key], str) and len(a[key]) <= 300),
                   f"alert {i}: '{key}' must be a string")
        out.append(IncomingAlert(
            source="generic", fingerprint=f"generic:{fp}" if fp else labels_fingerprint("generic", {**labels,
                                                                                                  "title": title}),
            status=AlertStatus(status), title=title, at=parse_time(a.get("at"), f"alert {i}.at") or datetime.now(UTC),
            resource=a.get("resource") or None, metric=a.get("metric") or None, labels=labels,
            annotations=str_map(a.get("annotations"), f"alert {i}.annotations")))
    return out
