"""The trigger registry: every webhook Vigil accepts, alert triggers and change webhooks alike, in one
table with one verifier signature::

    verify(headers, body, secret, now, check) -> None        # raises WebhookRejected (a 4xx)
    parse(headers, body, config) -> list[IncomingAlert]      # alert triggers
                                  | (list[ChangeEvent], note) # change webhooks

``headers`` is the delivery's (case-insensitive) header mapping, ``body`` its raw bytes, ``secret`` the
space's secret for the integration (None for the ones verified otherwise), ``now`` unix seconds and
``check`` what else a verifier may need (the integration's config, the replay tolerance, the SNS
certificate fetcher). Adding a trigger is a module with ``verify`` and ``parse`` and one line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vigil.integrations import alertmanager, generic, github, gitlab, grafana, pagerduty, sns
from vigil.integrations.common import WebhookRejected, load_json


@dataclass(frozen=True)
class Check:
    config: dict[str, Any] = field(default_factory=dict)
    tolerance_s: float = 300.0
    sns_max_age_s: float = sns.MAX_AGE_S
    certs: sns.CertFetcher | None = None


Verifier = Callable[[Mapping[str, str], bytes, "str | None", float, Check], None]
Parser = Callable[[Mapping[str, str], bytes, dict[str, Any]], Any]


@dataclass(frozen=True)
class Trigger:
    kind: str
    #: how a delivery proves it is genuine: "token" (a space token, checked by the interface),
    #: "signature" (``verify`` with the space's secret), "token-or-signature", "sns" (``verify``, no secret)
    auth: str
    verify: Verifier | None
    parse: Parser
    #: "alerts" or "changes"
    produces: str = "alerts"

    @property
    def needs_secret(self) -> bool:
        return self.auth in ("signature", "token-or-signature")


# -- the verifiers, one signature ---------------------------------------------------------------
def _pagerduty(headers: Mapping[str, str], body: bytes, secret: str | None, now: float, check: Check) -> None:
    pagerduty.verify(body, headers.get(pagerduty.HEADER), secret or "")


def _generic(headers: Mapping[str, str], body: bytes, secret: str | None, now: float, check: Check) -> None:
    generic.verify(body, headers.get(generic.SIGNATURE), headers.get(generic.TIMESTAMP), secret or "",
                   check.tolerance_s, now)


def _grafana(headers: Mapping[str, str], body: bytes, secret: str | None, now: float, check: Check) -> None:
    grafana.verify(body, headers, secret or "", check.config, check.tolerance_s, now)


def _github(headers: Mapping[str, str], body: bytes, secret: str | None, now: float, check: Check) -> None:
    github.verify(body, headers.get(github.SIGNATURE), secret or "")


def _gitlab(headers: Mapping[str, str], body: bytes, secret: str | None, now: float, check: Check) -> None:
    gitlab.verify(headers.get(gitlab.TOKEN), secret or "")


def sns_message(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    msg = load_json(body)
    if not isinstance(msg, dict):
        raise WebhookRejected("the body must be an SNS message object")
    declared = headers.get("x-amz-sns-message-type")
    if declared and declared != msg.get("Type"):
        raise WebhookRejected("x-amz-sns-message-type does not match the message Type")
    return msg


def _sns(headers: Mapping[str, str], body: bytes, secret: str | None, now: float, check: Check) -> None:
    if check.certs is None:
        raise WebhookRejected("SNS deliveries cannot be verified here (no certificate fetcher)", 403, "not-configured")
    sns.verify(sns_message(headers, body), check.certs, list(check.config.get("topic_arns") or []),
               max_age_s=check.sns_max_age_s, skew_s=check.tolerance_s, now=datetime.fromtimestamp(now, UTC))


# -- the parsers ----------------------------------------------------------------------------------
def _sns_parse(headers: Mapping[str, str], body: bytes, config: dict[str, Any]) -> list[Any]:
    msg = sns_message(headers, body)
    return sns.parse_cloudwatch(msg) if msg.get("Type") == "Notification" else []


TRIGGERS: dict[str, Trigger] = {t.kind: t for t in [
    Trigger("alertmanager", "token", None, lambda h, b, c: alertmanager.parse(load_json(b))),
    Trigger("grafana", "token-or-signature", _grafana, lambda h, b, c: grafana.parse(load_json(b))),
    Trigger("pagerduty", "signature", _pagerduty, lambda h, b, c: pagerduty.parse(load_json(b))),
    Trigger("generic", "signature", _generic, lambda h, b, c: generic.parse(load_json(b))),
    Trigger("sns", "sns", _sns, _sns_parse),
    Trigger("github", "signature", _github, lambda h, b, c: github.parse(h.get(github.EVENT), load_json(b), c),
            "changes"),
    Trigger("gitlab", "signature", _gitlab, lambda h, b, c: gitlab.parse(h.get(gitlab.EVENT), load_json(b), c),
            "changes"),
]}


def get(kind: str) -> Trigger:
    try:
        return TRIGGERS[kind]
    except KeyError:
        raise WebhookRejected(f"unknown webhook kind {kind[:40]!r}", 404, "unknown") from None
