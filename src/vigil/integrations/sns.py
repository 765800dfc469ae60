"""Amazon SNS deliveries (CloudWatch alarms published to a topic, delivered over HTTP(S)).

Verification follows AWS's documented procedure:
1. the ``SigningCertURL`` must match the allowed pattern (default: ``https://sns.<region>.amazonaws.com
   [.cn]/...pem``, fetched over HTTPS so TLS vouches for the host);
2. the string to sign is built from the message's fields, each as ``Name\\nvalue\\n`` in this order:
   Notification: Message, MessageId, Subject (only if present), Timestamp, TopicArn, Type;
   SubscriptionConfirmation / UnsubscribeConfirmation: Message, MessageId, SubscribeURL, Timestamp,
   Token, TopicArn, Type;
3. ``Signature`` (base64) must verify under the certificate's RSA key with PKCS#1 v1.5 and SHA1
   (``SignatureVersion`` 1) or SHA256 (``SignatureVersion`` 2), and the certificate must be valid now;
4. the ``TopicArn`` must be one the space allows (``topic_arns`` in its ``sns`` integration);
5. the ``Timestamp`` (when SNS published the message) must be at most ``MAX_AGE_S`` old: SNS retries an
   HTTP/S delivery for at most 3,600 s in all ("The total policy retry time for an HTTP/S endpoint cannot be
   greater than 3,600 seconds", docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html), so an
   older message is a replay; and no more than the clock tolerance in the future.

Every refusal is a 4xx (the message cannot be shown to come from SNS, or it is not for this space), the
certificate fetch included: whatever a stranger puts in a delivery never makes Vigil answer 5xx.

Tests (and private deployments) point ``VIGIL_SNS_CERT_URL_REGEX`` at a certificate they serve
themselves, e.g. ``^http://127\\.0\\.0\\.1:\\d+/.*\\.pem$``."""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vigil.integrations.common import WebhookRejected, expect, parse_time, str_map
from vigil.model import AlertStatus, IncomingAlert

TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
MAX_CERT_BYTES = 64 * 1024
MAX_AGE_S = 3600.0          # SNS's longest HTTP/S retry policy


def string_to_sign(msg: dict[str, Any]) -> bytes:
    fields = _NOTIFICATION_FIELDS if msg.get("Type") == "Notification" else _SUBSCRIPTION_FIELDS
    out = []
    for f in fields:
        if f == "Subject" and msg.get("Subject") is None:
            continue
        v = msg.get(f)
        if not isinstance(v, str):
            raise WebhookRejected(f"SNS message field {f} is missing", 400)
        out.append(f"{f}\n{v}\n")
    return "".join(out).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None         # an allowed certificate URL must answer itself, not send Vigil elsewhere


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def check_timestamp(msg: dict[str, Any], now: datetime | None = None, max_age_s: float = MAX_AGE_S,
                    skew_s: float = 300.0) -> None:
    """Refuse (401) a message published more than ``max_age_s`` ago or more than ``skew_s`` ahead."""
    try:
        ts = parse_time(msg.get("Timestamp"), "Timestamp")
    except WebhookRejected as exc:
        raise WebhookRejected(str(exc), 400, "malformed") from None
    if ts is None:
        raise WebhookRejected("SNS message field Timestamp is missing", 400)
    age = ((now or datetime.now(UTC)) - ts).total_seconds()
    if age > max_age_s:
        raise WebhookRejected(f"the SNS message was published {age:.0f} s ago, more than {max_age_s:.0f} s: "
                              "a replay", 401, "stale")
    if age < -skew_s:
        raise WebhookRejected("the SNS message's Timestamp is in the future (check the server's clock)", 401, "stale")


class CertFetcher:
    """Fetches and caches signing certificates from allowed URLs only."""

    def __init__(self, url_regex: str, timeout_s: float = 5.0) -> None:
        self.pattern = re.compile(url_regex)
        self.timeout_s = timeout_s
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        if not isinstance(url, str) or not self.pattern.match(url):
            raise WebhookRejected("SigningCertURL is not an allowed SNS certificate URL", 401, "bad-cert-url")
        with self._lock:
            cert = self._cache.get(url)
        if cert is None:
            try:
                with _NO_REDIRECTS.open(url, timeout=self.timeout_s) as resp:
                    pem = resp.read(MAX_CERT_BYTES + 1)
            except urllib.error.HTTPError as exc:
                raise WebhookRejected(f"the SNS signing certificate URL answered HTTP {exc.code}", 401,
                                      "cert-fetch") from None
            except (OSError, ValueError):
                raise WebhookRejected("could not fetch the SNS signing certificate, so the message cannot be "
                                      "verified (can the server reach its SigningCertURL?)", 401, "cert-fetch") from None
            if len(pem) > MAX_CERT_BYTES:
                raise WebhookRejected("the SNS signing certificate is too large", 401, "bad-cert")
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise WebhookRejected("the SNS signing certificate is not a PEM certificate", 401, "bad-cert") from None
            with self._lock:
                if len(self._cache) > 100:
                    self._cache.clear()
                self._cache[url] = cert
        return cert


def verify(msg: dict[str, Any], fetcher: CertFetcher, allowed_topics: list[str], *, max_age_s: float = MAX_AGE_S,
           skew_s: float = 300.0, now: datetime | None = None) -> None:
    expect(msg.get("Type") in TYPES, f"SNS message Type must be one of {', '.join(TYPES)}")
    version = msg.get("SignatureVersion")
    algo = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algo is None:
        raise WebhookRejected("SNS SignatureVersion must be \"1\" or \"2\"", 401, "unsigned")
    sig_b64 = msg.get("Signature")
    if not isinstance(sig_b64, str) or not sig_b64:
        raise WebhookRejected("the SNS message has no Signature", 401, "unsigned")
    try:
        signature = base64.b64decode(sig_b64, validate=True)
    except ValueError:
        raise WebhookRejected("the SNS Signature is not base64", 401, "bad-signature") from None
    payload = string_to_sign(msg)
    check_timestamp(msg, now, max_age_s, skew_s)          # before anything is fetched
    cert = fetcher.get(msg.get("SigningCertURL"))
    now = datetime.now(UTC)
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise WebhookRejected("the SNS signing certificate is not valid now", 401, "bad-cert")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected("the SNS signing certificate has no RSA key", 401, "bad-cert")
    try:
        key.verify(signature, payload, padding.PKCS1v15(), algo)
    except InvalidSignature:
        raise WebhookRejected("the SNS signature does not match the message", 401, "bad-signature") from None
    if msg.get("TopicArn") not in allowed_topics:
        raise WebhookRejected("this SNS topic is not allowed for the space", 403, "topic")


def parse_cloudwatch(msg: dict[str, Any]) -> list[IncomingAlert]:
    """A CloudWatch alarm state change in an SNS Notification: ALARM fires, OK resolves, the rest
    (INSUFFICIENT_DATA, messages that are not alarms) is ignored."""
    try:
        alarm = json.loads(msg.get("Message") or "")
    except (ValueError, RecursionError):
        return []
    if not isinstance(alarm, dict) or "AlarmName" not in alarm or "NewStateValue" not in alarm:
        return []
    state = alarm.get("NewStateValue")
    if state not in ("ALARM", "OK"):
        return []
    name = str(alarm.get("AlarmName"))[:500]
    trigger = alarm.get("Trigger") if isinstance(alarm.get("Trigger"), dict) else {}
    dims = trigger.get("Dimensions") if isinstance(trigger.get("Dimensions"), list) else []
    labels = {"alarm": name, "region": str(alarm.get("Region") or ""), "namespace": str(trigger.get("Namespace") or "")}
    resource = None
    for d in dims:
        if isinstance(d, dict) and d.get("name") and d.get("value") is not None:
            labels[str(d["name"])[:100]] = str(d["value"])[:300]
            resource = resource or str(d["value"])[:300]
    at = parse_time(alarm.get("StateChangeTime"), "StateChangeTime") or parse_time(msg.get("Timestamp"), "Timestamp")
    expect(at is not None, "the CloudWatch alarm has no StateChangeTime")
    arn = str(alarm.get("AlarmArn") or name)[:150]
    return [IncomingAlert(source="cloudwatch", fingerprint=f"cloudwatch:{arn}",
                          status=AlertStatus.FIRING if state == "ALARM" else AlertStatus.RESOLVED,
                          title=name, at=at, resource=resource, metric=str(trigger.get("MetricName") or "") or None,
                          labels=str_map({k: v for k, v in labels.items() if v}, "alarm"),
                          annotations=str_map({"reason": alarm.get("NewStateReason"),
                                               "description": alarm.get("AlarmDescription")}, "alarm"))]
