"""PagerDuty v3 webhooks. Every delivery carries ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``,
the HMAC-SHA256 of the raw body under the subscription's secret (several during a secret
rotation); at least one must match. ``incident.triggered`` opens an alert, ``incident.resolved``
resolves it; other event types are acknowledged and ignored."""

from __future__ import annotations

from typing import Any

from vigil.integrations.common import WebhookRejected, expect, hmac_sha256_hex, parse_time, same, str_map
from vigil.model import AlertStatus, IncomingAlert

HEADER = "X-PagerDuty-Signature"


def verify(body: bytes, header: str | None, secret: str) -> None:
    if not header:
        raise WebhookRejected(f"missing {HEADER} header", 401, "unsigned")
    expected = "v1=" + hmac_sha256_hex(secret, body)
    if not any(same(sig.strip(), expected) for sig in header.split(",")):
        raise WebhookRejected(f"{HEADER} does not match the body", 401, "bad-signature")


def parse(payload: Any) -> list[IncomingAlert]:
    expect(isinstance(payload, dict) and isinstance(payload.get("event"), dict),
           "the body must be a PagerDuty v3 webhook: an object with an 'event' object")
    ev = payload["event"]
    kind = ev.get("event_type")
    expect(isinstance(kind, str), "event.event_type must be a string")
    if kind not in ("incident.triggered", "incident.resolved"):
        return []
    data = ev.get("data")
    expect(isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"],
           "event.data must be an incident with an id")
    service = data.get("service") if isinstance(data.get("service"), dict) else {}
    priority = data.get("priority") if isinstance(data.get("priority"), dict) else {}
    at = parse_time(data.get("created_at"), "event.data.created_at") or parse_time(ev.get("occurred_at"),
                                                                                  "event.occurred_at")
    if at is None:
        raise WebhookRejected("event.occurred_at is missing")
    labels = str_map({"service": service.get("summary"), "urgency": data.get("urgency"),
                      "priority": priority.get("summary"), "incident_number": data.get("number"),
                      "incident_key": data.get("incident_key")}, "event.data")
    labels = {k: v for k, v in labels.items() if v}
    title = data.get("title") if isinstance(data.get("title"), str) else "PagerDuty incident"
    return [IncomingAlert(source="pagerduty", fingerprint=f"pagerduty:{data['id'][:100]}",
                          status=AlertStatus.RESOLVED if kind == "incident.resolved" else AlertStatus.FIRING,
                          title=title[:500], at=at, resource=labels.get("service"), labels=labels,
                          annotations={"html_url": str(data.get("html_url") or "")[:500]})]
