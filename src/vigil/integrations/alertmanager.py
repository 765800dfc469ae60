"""Prometheus Alertmanager webhook (payload version 4) and Grafana alerting webhooks (the same
shape plus a few fields). Authenticated by a space token in the Authorization header, which both
tools can send (Alertmanager: ``http_config.authorization``; Grafana: "Authorization Header")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vigil.integrations.common import (
    MAX_ALERTS,
    WebhookRejected,
    expect,
    labels_fingerprint,
    parse_time,
    resource_of,
    str_map,
)
from vigil.model import AlertStatus, IncomingAlert


def parse(payload: Any, source: str = "alertmanager") -> list[IncomingAlert]:
    expect(isinstance(payload, dict), "the body must be a JSON object with an 'alerts' list")
    if source == "alertmanager" and payload.get("version") not in (None, "4"):
        raise WebhookRejected(f"unsupported Alertmanager webhook version {str(payload.get('version'))[:10]!r} "
                              "(expected \"4\")")
    alerts = payload.get("alerts")
    expect(isinstance(alerts, list), "'alerts' must be a list")
    expect(len(alerts) <= MAX_ALERTS, f"at most {MAX_ALERTS} alerts per delivery")
    common = str_map(payload.get("commonLabels"), "commonLabels")
    out = []
    for i, a in enumerate(alerts):
        expect(isinstance(a, dict), f"alerts[{i}] must be an object")
        status = a.get("status", payload.get("status", "firing"))
        expect(status in ("firing", "resolved"), f"alerts[{i}].status must be 'firing' or 'resolved'")
        labels = {**common, **str_map(a.get("labels"), f"alerts[{i}].labels")}
        annotations = str_map(a.get("annotations"), f"alerts[{i}].annotations")
        fp = a.get("fingerprint")
        expect(fp is None or (isinstance(fp, str) and 0 < len(fp) <= 150),
               f"alerts[{i}].fingerprint must be a short string")
        starts = parse_time(a.get("startsAt"), f"alerts[{i}].startsAt") or datetime.now(UTC)
        title = annotations.get("summary") or labels.get("alertname") or "alert"
        out.append(IncomingAlert(
            source=source, fingerprint=f"{source}:{fp}" if fp else labels_fingerprint(source, labels),
            status=AlertStatus(status), title=title[:500], at=starts, resource=resource_of(labels),
            metric=labels.get("metric") or labels.get("__name__") or None, labels=labels, annotations=annotations))
    return out
