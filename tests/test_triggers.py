"""Every webhook trigger is in one registry with one verifier signature,
``verify(headers, body, secret, now, check)``: a delivery signed with the space's secret passes, one
signed otherwise, unsigned or (where the vendor signs a time) replayed is refused with a 4xx."""

from __future__ import annotations

import inspect
import json
import time

import pytest

from vigil.integrations import KINDS, WebhookRejected, generic, github, pagerduty, triggers
from vigil.integrations.common import hmac_sha256_hex

SECRET = "s3cret-0123456789"
BODY = json.dumps({"title": "cart down", "labels": {"service": "cart"}}).encode()
NOW = time.time()


def test_the_registry_holds_every_kind_the_api_accepts():
    assert set(triggers.TRIGGERS) == set(KINDS)
    for t in triggers.TRIGGERS.values():
        assert t.produces in ("alerts", "changes")
        assert (t.verify is None) == (t.auth == "token"), t.kind
        if t.verify is not None:
            assert list(inspect.signature(t.verify).parameters) == ["headers", "body", "secret", "now", "check"]


def _signed(kind: str, body: bytes, secret: str, now: float) -> dict[str, str]:
    if kind == "generic":
        return generic.sign(secret, body, int(now))
    if kind == "pagerduty":
        return {pagerduty.HEADER: "v1=" + hmac_sha256_hex(secret, body)}
    if kind == "grafana":
        return {"X-Grafana-Alerting-Signature": hmac_sha256_hex(secret, body)}
    if kind == "github":
        return github.sign(secret, body)
    return {"X-Gitlab-Token": secret}


@pytest.mark.parametrize("kind", ["generic", "pagerduty", "grafana", "github", "gitlab"])
def test_a_signed_delivery_passes_and_a_forged_one_is_refused(kind):
    t = triggers.get(kind)
    t.verify(_signed(kind, BODY, SECRET, NOW), BODY, SECRET, NOW, triggers.Check())
    with pytest.raises(WebhookRejected) as bad:
        t.verify(_signed(kind, BODY, "another-secret-0123", NOW), BODY, SECRET, NOW, triggers.Check())
    assert 400 <= bad.value.status < 500
    with pytest.raises(WebhookRejected) as unsigned:
        t.verify({}, BODY, SECRET, NOW, triggers.Check())
    assert 400 <= unsigned.value.status < 500


def test_now_is_the_verifiers_clock():
    """A generic delivery signed 10 minutes before ``now`` is a replay; at ``now`` it passes."""
    headers = generic.sign(SECRET, BODY, int(NOW))
    triggers.get("generic").verify(headers, BODY, SECRET, NOW, triggers.Check(tolerance_s=300))
    with pytest.raises(WebhookRejected, match="replay") as stale:
        triggers.get("generic").verify(headers, BODY, SECRET, NOW + 600, triggers.Check(tolerance_s=300))
    assert stale.value.reason == "stale"


def test_an_unknown_kind_is_a_404_not_a_crash():
    with pytest.raises(WebhookRejected) as e:
        triggers.get("nagios")
    assert e.value.status == 404
