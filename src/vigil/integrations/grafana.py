"""Grafana alerting webhooks. The payload is Alertmanager's shape (see ``alertmanager.parse``).
Authenticated by a space token ("Authorization Header" credentials), or by Grafana's HMAC
signature when the space configures a ``grafana`` integration with a secret: the header
(``X-Grafana-Alerting-Signature`` unless configured otherwise) carries the lowercase hex
HMAC-SHA256 of the raw body, or of ``"<timestamp>:<body>"`` when a timestamp header is configured
(its value, unix seconds, must then be within the tolerance)."""

from __future__ import annotations

import time
from typing import Any

from vigil.integrations import alertmanager
from vigil.integrations.common import WebhookRejected, hmac_sha256_hex, same
from vigil.model import IncomingAlert

HEADER = "X-Grafana-Alerting-Signature"


def verify(body: bytes, headers, secret: str, config: dict[str, Any], tolerance_s: float,
           now: float | None = None) -> None:
    header = str(config.get("header") or HEADER)
    sig = headers.get(header)
    if not sig:
        raise WebhookRejected(f"missing {header} header (or a bearer token)", 401, "unsigned")
    ts_header = config.get("timestamp_header")
    signed = body
    if ts_header:
        ts = headers.get(str(ts_header))
        try:
            ts_val = int(ts or "")
        except ValueError:
            raise WebhookRejected(f"missing or bad {ts_header} header", 401, "unsigned") from None
        if abs((time.time() if now is None else now) - ts_val) > tolerance_s:
            raise WebhookRejected(f"{ts_header} is more than {tolerance_s:g} s away from now (replay?)", 401,
                                  "stale")
        signed = f"{ts}:".encode() + body
    if not same(sig.strip().lower(), hmac_sha256_hex(secret, signed)):
        raise WebhookRejected(f"{header} does not match the body", 401, "bad-signature")


def parse(payload: Any) -> list[IncomingAlert]:
    return alertmanager.parse(payload, source="grafana")
