"""Alert triggers: each turns a vendor's webhook delivery into ``IncomingAlert``s after checking
that the delivery is genuine (bearer token, HMAC signature or SNS certificate signature)."""

from vigil.integrations.common import KINDS, WebhookRejected

__all__ = ["KINDS", "WebhookRejected"]
