"""Webhook deliveries: the space's integration looked up, the delivery verified by its trigger (the one
registry, ``vigil.integrations.triggers``) and parsed. What the delivery then does is another service's:
alerts go to ``AlertService.accept``, change events to ``ChangeService.record``."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from vigil.integrations import triggers
from vigil.integrations.common import WebhookRejected


class WebhookService:
    def __init__(self, integrations: Any, settings: Any = None) -> None:
        self.integrations = integrations
        self.tolerance_s = float(getattr(settings, "webhook_tolerance_s", 300.0))
        self.sns_max_age_s = float(getattr(settings, "sns_max_age_s", triggers.sns.MAX_AGE_S))
        self.certs: Any = None         # the SNS certificate fetcher (the server's, shared by its requests)

    def integration(self, space: str, kind: str) -> tuple[dict[str, Any], str | None]:
        """(config, secret) of the space's integration; refused alike whether or not the space exists,
        so nothing is learnt without the secret."""
        got = self.integrations.config(space, kind)
        trig = triggers.get(kind)
        if got is None or (trig.auth == "signature" and not got[1]):
            raise WebhookRejected(f"{kind} webhooks are not enabled for this space", 403, "not-configured")
        return got

    def has_signature(self, space: str, kind: str, headers: Mapping[str, str]) -> bool:
        """Whether a delivery that brings no token can be verified by signature: the space has a secret
        for ``kind`` and the delivery carries the signature header (Grafana's configured one)."""
        got = self.integrations.config(space, kind)
        if got is None or not got[1]:
            return False
        return bool(headers.get(str(got[0].get("header") or triggers.grafana.HEADER)))

    def verify(self, space: str, kind: str, headers: Mapping[str, str], body: bytes,
               now: float | None = None) -> dict[str, Any]:
        """Check a signed delivery with the space's integration (its trigger's ``verify``); returns the
        integration's config. Refused (4xx ``WebhookRejected``) when it is not genuine or not enabled."""
        trig = triggers.get(kind)
        config, secret = self.integration(space, kind)
        check = triggers.Check(config=config, tolerance_s=self.tolerance_s, sns_max_age_s=self.sns_max_age_s,
                               certs=self.certs)
        if trig.verify is not None:
            trig.verify(headers, body, secret, time.time() if now is None else now, check)
        return config

    @staticmethod
    def parse(kind: str, headers: Mapping[str, str], body: bytes, config: dict[str, Any] | None = None) -> Any:
        """What a delivery carries, by its trigger's parser: alerts, or (change events, note)."""
        return triggers.get(kind).parse(headers, body, config or {})

    def verified(self, space: str, kind: str, headers: Mapping[str, str], body: bytes,
                 now: float | None = None) -> tuple[Any, dict[str, Any]]:
        """``verify`` then ``parse``: (what it carries, config)."""
        config = self.verify(space, kind, headers, body, now)
        return self.parse(kind, headers, body, config), config

    def sns_control(self, space: str, headers: Mapping[str, str], body: bytes, config: dict[str, Any],
                    audit: Any) -> str:
        """A verified SNS subscription or unsubscribe message: confirmed when the integration says so (only
        at the host that signed it), and audited. Returns the outcome."""
        msg = triggers.sns_message(headers, body)
        if msg.get("Type") == "SubscriptionConfirmation":
            outcome = "subscription-pending"
            url = str(msg.get("SubscribeURL", ""))
            cert = urllib.parse.urlsplit(str(msg.get("SigningCertURL", "")))
            target = urllib.parse.urlsplit(url)
            if config.get("auto_confirm") and (target.scheme, target.netloc) == (cert.scheme, cert.netloc):
                try:
                    urllib.request.urlopen(url, timeout=5).read(65536)  # noqa: S310
                    outcome = "subscription-confirmed"
                except OSError:
                    outcome = "subscription-confirm-failed"
            audit.record("sns (signed)", f"sns-{outcome}", space, str(msg.get("TopicArn"))[:200],
                         {"subscribe_url": url[:1000]})
            return outcome
        audit.record("sns (signed)", "sns-unsubscribed", space, str(msg.get("TopicArn"))[:200])
        return "unsubscribed"
