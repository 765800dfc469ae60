"""Alert triggers over real HTTP: Alertmanager and Grafana payloads, PagerDuty v3 signatures, SNS
(CloudWatch alarms) with certificate-signed messages, the generic HMAC webhook; de-duplication and
grouping of an alert storm; and deliveries that must be refused (unsigned, tampered, stale, foreign
topic, malformed). The SNS signing certificate comes from a CA made here and is served on loopback;
the server is told to accept that URL instead of sns.<region>.amazonaws.com."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from e2e.kit import live_server

from vigil.model import Role

TOPIC = "arn:aws:sns:eu-west-1:123456789012:vigil-alarms"


# -- a CA, an SNS-like signing certificate, and a loopback server for them ------------------------
def _cert(subject: str, key, issuer_name, issuer_key, ca: bool, days: tuple[int, int] = (-1, 30)):
    now = datetime.now(UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + timedelta(days=days[0])).not_valid_after(now + timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return b.sign(issuer_key, hashes.SHA256())


class CertServer:
    def __init__(self) -> None:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vigil Test CA")])
        ca = _cert("Vigil Test CA", ca_key, ca_name, ca_key, ca=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.expired_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.files = {
            "/SimpleNotificationService-test.pem": _cert("sns.amazonaws.com", self.key, ca.subject, ca_key, False),
            "/expired.pem": _cert("sns.amazonaws.com", self.expired_key, ca.subject, ca_key, False, (-30, -1)),
        }
        self.files = {k: v.public_bytes(serialization.Encoding.PEM) for k, v in self.files.items()}
        self.confirmed: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path.startswith("/confirm"):
                    outer.confirmed.append(self.path)
                    body = b"<ConfirmSubscriptionResponse/>"
                else:
                    body = outer.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sign(self, msg: dict, version: str = "1", key=None, cert: str = "/SimpleNotificationService-test.pem") -> dict:
        """Sign as SNS documents it: the listed fields as 'Name\\nvalue\\n', in this order."""
        msg = {**msg, "SignatureVersion": version, "SigningCertURL": self.base + cert}
        fields = (["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] if msg["Type"] == "Notification"
                  else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])
        text = "".join(f"{f}\n{msg[f]}\n" for f in fields if f in msg)
        algo = hashes.SHA1() if version == "1" else hashes.SHA256()
        sig = (key or self.key).sign(text.encode(), padding.PKCS1v15(), algo)
        return {**msg, "Signature": base64.b64encode(sig).decode()}


@pytest.fixture(scope="module")
def certs():
    s = CertServer()
    yield s
    s.httpd.shutdown()


@pytest.fixture(scope="module")
def live(tmp_path_factory, certs):
    with live_server(tmp_path_factory.mktemp("webhooks"), workers=1,
                     sns_cert_url_regex=r"^http://127\.0\.0\.1:\d+/[^?#]+\.pem$") as lv:
        yield lv


def _space(live, name: str, **integrations) -> tuple[str, str]:
    """A fresh space with an operator and a viewer token, and the given integrations."""
    live.space(name)
    for kind, (config, secret) in integrations.items():
        live.state.put_integration(name, kind, config, secret)
    return live.token(name, Role.OPERATOR), live.token(name, Role.VIEWER)


def _am(alerts: list[dict], status: str = "firing") -> dict:
    return {"version": "4", "groupKey": "{}:{alertname=\"X\"}", "status": status, "receiver": "vigil",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "truncatedAlerts": 0, "alerts": alerts}


def _am_alert(fp: str, name: str = "HighLatency", status: str = "firing", **labels) -> dict:
    return {"status": status, "labels": {"alertname": name, **labels}, "annotations": {"summary": f"{name} summary"},
            "startsAt": "2024-05-01T12:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": fp}


# -- Alertmanager and Grafana ---------------------------------------------------------------------
def test_alertmanager_dedupes_groups_and_resolves(live):
    op, viewer = _space(live, "am")
    with live.client(op) as c, live.client(viewer) as v:
        r = c.post("/v1/spaces/am/webhooks/alertmanager", json=_am([_am_alert("f1", service="cart")]))
        assert r.status_code == 202 and r.json()["outcomes"][0]["outcome"] == "new-incident"
        first = r.json()["outcomes"][0]
        # an alert storm: 60 related alerts and the same one again, in two deliveries
        storm = [_am_alert(f"s{i}", f"Storm{i}") for i in range(60)]
        r2 = c.post("/v1/spaces/am/webhooks/alertmanager", json=_am(storm[:30] + [_am_alert("f1", service="cart")]))
        r3 = c.post("/v1/spaces/am/webhooks/alertmanager", json=_am(storm[30:]))
        outcomes = r2.json()["outcomes"] + r3.json()["outcomes"]
        assert sum(o["outcome"] == "grouped" for o in outcomes) == 60
        assert sum(o["outcome"] == "duplicate" for o in outcomes) == 1
        assert {o["investigation_id"] for o in outcomes} == {first["investigation_id"]}
        assert len(v.get("/v1/spaces/am/investigations").json()) == 1
        inc = v.get(f"/v1/spaces/am/incidents/{first['incident_id']}").json()
        assert inc["alert_count"] == 61 and inc["duplicates"] == 1
        a = next(x for x in inc["alerts"] if x["fingerprint"] == "alertmanager:f1")
        assert a["resource"] == "cart" and a["title"] == "HighLatency summary" and a["receipts"] == 2
        assert a["starts_at"].startswith("2024-05-01T12:00:00.123456")
        inv = v.get(f"/v1/spaces/am/investigations/{first['investigation_id']}").json()
        assert inv["trigger"]["alert"]["resource"] == "cart" and inv["window"]["onset"].startswith("2024-05-01T12:00")
        # the journal tells of the grouped alerts, summarised: one entry for the 30 of the first delivery
        journal = v.get(f"/v1/spaces/am/investigations/{first['investigation_id']}/journal").json()
        joined = [j for j in journal if j["data"].get("outcome") == "grouped"]
        assert [j["data"]["count"] for j in joined] == [30], joined
        assert joined[0]["message"].startswith("30 related alerts joined the incident: Storm0 summary")
        # resolution
        resolved = [dict(x, status="resolved") for x in [_am_alert("f1")] + storm]
        r = c.post("/v1/spaces/am/webhooks/alertmanager", json=_am(resolved, "resolved"))
        assert {o["outcome"] for o in r.json()["outcomes"]} == {"resolved"}
        assert v.get(f"/v1/spaces/am/incidents/{first['incident_id']}").json()["status"] == "resolved"
        audit = live.state.audit_log("am")
        assert audit[0]["action"] == "alerts" and audit[0]["actor"].startswith("alertmanager via token:")


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not valid JSON"),
    (b"[]", "'alerts' list"),
    (json.dumps({"version": "4", "alerts": "no"}).encode(), "'alerts' must be a list"),
    (json.dumps({"version": "3", "alerts": []}).encode(), "unsupported Alertmanager webhook version"),
    (json.dumps(_am([{"status": "exploded", "labels": {}}])).encode(), "must be 'firing' or 'resolved'"),
    (json.dumps(_am([{"labels": {"a": {"nested": 1}}}])).encode(), "must be a string"),
    (json.dumps(_am([{"labels": {}, "startsAt": "yesterday"}])).encode(), "not an RFC 3339 time"),
    (json.dumps(_am([_am_alert(str(i)) for i in range(5001)])).encode(), "at most 5000 alerts"),
])
def test_malformed_alertmanager_payloads_are_400_and_store_nothing(live, payload, message):
    space = f"bad{hashlib.sha1(payload).hexdigest()[:8]}"
    op, _ = _space(live, space)
    with live.client(op) as c:
        r = c.post(f"/v1/spaces/{space}/webhooks/alertmanager", content=payload,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert live.state.list_incidents(space) == [] and live.state.list_investigations(space) == []


def test_grafana_with_a_token_or_its_hmac_signature(live):
    op, viewer = _space(live, "graf", grafana=({"timestamp_header": "X-Grafana-Alerting-Timestamp"},
                                               "grafana-shared-secret-0123456789"))
    payload = {"receiver": "vigil", "status": "firing", "orgId": 1, "alerts": [{
        "status": "firing", "labels": {"alertname": "High memory usage", "service": "api"},
        "annotations": {"summary": "memory is high"}, "startsAt": "2021-10-12T09:51:03.157076+02:00",
        "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "c6eadffa33fcdf37", "values": {"B": 44.2}}],
        "groupLabels": {}, "commonLabels": {"team": "blue"}, "version": "1", "groupKey": "{}:{}", "truncatedAlerts": 0}
    body = json.dumps(payload).encode()
    with live.client() as c:
        r = c.post("/v1/spaces/graf/webhooks/grafana", content=body, headers={"Authorization": f"Bearer {op}"})
        assert r.status_code == 202 and r.json()["outcomes"][0]["outcome"] == "new-incident"
        ts = str(int(time.time()))
        sig = hmac.new(b"grafana-shared-secret-0123456789", f"{ts}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"X-Grafana-Alerting-Signature": sig, "X-Grafana-Alerting-Timestamp": ts}
        r = c.post("/v1/spaces/graf/webhooks/grafana", content=body, headers=headers)
        assert r.status_code == 202 and r.json()["outcomes"][0]["outcome"] == "duplicate"
        # tampered body, stale timestamp, no signature
        assert c.post("/v1/spaces/graf/webhooks/grafana", content=body.replace(b"memory", b"MEMORY"),
                      headers=headers).status_code == 401
        old = str(int(time.time()) - 3600)
        stale = hmac.new(b"grafana-shared-secret-0123456789", f"{old}:".encode() + body, hashlib.sha256).hexdigest()
        r = c.post("/v1/spaces/graf/webhooks/grafana", content=body,
                   headers={"X-Grafana-Alerting-Signature": stale, "X-Grafana-Alerting-Timestamp": old})
        assert r.status_code == 401 and "replay" in r.json()["error"]
        assert c.post("/v1/spaces/graf/webhooks/grafana", content=body).status_code == 401
        # a viewer token may not post alerts
        assert c.post("/v1/spaces/graf/webhooks/grafana", content=body,
                      headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    inc = live.state.list_incidents("graf")[0]
    assert inc.source == "grafana" and inc.duplicates == 1
    alert = live.state.get_incident(inc.id, "graf").alerts[0]
    assert alert.labels["team"] == "blue" and alert.resource == "api" and alert.starts_at.hour == 7


# -- PagerDuty ------------------------------------------------------------------------------------
def _pd(event_type: str, incident: str = "PGR0VU2") -> bytes:
    return json.dumps({"event": {
        "id": f"01{incident}{event_type}", "event_type": event_type, "resource_type": "incident",
        "occurred_at": "2020-10-02T18:45:22.169Z", "agent": {"type": "user_reference"},
        "data": {"id": incident, "type": "incident", "html_url": f"https://acme.pagerduty.com/incidents/{incident}",
                 "number": 2, "status": "triggered", "incident_key": "d3640fbd", "created_at": "2020-04-09T15:16:27Z",
                 "title": "A little bump in the road", "urgency": "high", "priority": {"summary": "P1"},
                 "service": {"id": "PF9KMXH", "summary": "API Service", "type": "service_reference"}}}}).encode()


def _pd_sig(body: bytes, *secrets: str) -> str:
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def test_pagerduty_v3_signatures_and_events(live):
    secret = "pd-subscription-secret-abcdef"
    _space(live, "pd", pagerduty=({}, secret))
    with live.client() as c:
        body = _pd("incident.triggered")
        # during a secret rotation PagerDuty sends several signatures; one matching is enough
        r = c.post("/v1/spaces/pd/webhooks/pagerduty", content=body,
                   headers={"X-PagerDuty-Signature": _pd_sig(body, "old-secret-000000000", secret)})
        assert r.status_code == 202 and r.json()["outcomes"][0]["outcome"] == "new-incident"
        ack = _pd("incident.acknowledged")
        r = c.post("/v1/spaces/pd/webhooks/pagerduty", content=ack, headers={"X-PagerDuty-Signature": _pd_sig(ack, secret)})
        assert r.status_code == 202 and r.json() == {"accepted": 0, "outcomes": []}
        res = _pd("incident.resolved")
        r = c.post("/v1/spaces/pd/webhooks/pagerduty", content=res, headers={"X-PagerDuty-Signature": _pd_sig(res, secret)})
        assert r.json()["outcomes"][0]["outcome"] == "resolved"
        # refused: unsigned, wrong secret, tampered body, signed garbage
        assert c.post("/v1/spaces/pd/webhooks/pagerduty", content=body).status_code == 401
        assert c.post("/v1/spaces/pd/webhooks/pagerduty", content=body,
                      headers={"X-PagerDuty-Signature": _pd_sig(body, "wrong-secret-00000000")}).status_code == 401
        assert c.post("/v1/spaces/pd/webhooks/pagerduty", content=body + b" ",
                      headers={"X-PagerDuty-Signature": _pd_sig(body, secret)}).status_code == 401
        garbage = b'{"event": "nope"}'
        r = c.post("/v1/spaces/pd/webhooks/pagerduty", content=garbage,
                   headers={"X-PagerDuty-Signature": _pd_sig(garbage, secret)})
        assert r.status_code == 400 and "PagerDuty v3 webhook" in r.json()["error"]
    inc = live.state.list_incidents("pd")
    assert len(inc) == 1 and inc[0].status.value == "resolved" and inc[0].title == "A little bump in the road"
    alert = live.state.get_incident(inc[0].id, "pd").alerts[0]
    assert alert.fingerprint == "pagerduty:PGR0VU2" and alert.resource == "API Service"
    assert alert.labels["priority"] == "P1"
    metrics = live.client().get("/metrics").text
    assert 'vigil_webhook_rejections_total{kind="pagerduty",reason="bad-signature"} 2.0' in metrics
    assert 'vigil_webhook_rejections_total{kind="pagerduty",reason="unsigned"} 1.0' in metrics


# -- SNS / CloudWatch -----------------------------------------------------------------------------
def _alarm(state: str = "ALARM") -> str:
    return json.dumps({
        "AlarmName": "checkout-5xx", "AlarmDescription": "5xx on checkout", "AWSAccountId": "123456789012",
        "NewStateValue": state, "NewStateReason": "Threshold Crossed: 1 datapoint [12.0] was >= 5.0",
        "StateChangeTime": "2024-05-01T12:00:00.000+0000", "Region": "EU (Ireland)",
        "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:checkout-5xx", "OldStateValue": "OK",
        "Trigger": {"MetricName": "HTTPCode_Target_5XX_Count", "Namespace": "AWS/ApplicationELB",
                    "Statistic": "SUM", "Dimensions": [{"value": "app/checkout/50dc6c495c0c9188", "name":
                                                        "LoadBalancer"}]}})


def _sns_time(ago_s: float = 0.0) -> str:
    """A Timestamp as SNS writes it (ISO 8601, milliseconds, Z), ``ago_s`` seconds in the past."""
    return (datetime.now(UTC) - timedelta(seconds=ago_s)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _notification(message: str, msg_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", subject=True) -> dict:
    m = {"Type": "Notification", "MessageId": msg_id, "TopicArn": TOPIC, "Message": message,
         "Timestamp": _sns_time(),
         "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"}
    if subject:
        m["Subject"] = 'ALARM: "checkout-5xx" in EU (Ireland)'
    return m


def test_sns_cloudwatch_alarms_with_verified_signatures(live, certs):
    _space(live, "aws", sns=({"topic_arns": [TOPIC], "auto_confirm": True}, None))
    url = "/v1/spaces/aws/webhooks/sns"
    hdr = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain; charset=UTF-8"}
    with live.client() as c:
        for version in ("1", "2"):
            msg = certs.sign(_notification(_alarm(), msg_id=f"m{version}", subject=version == "1"), version)
            r = c.post(url, content=json.dumps(msg), headers=hdr)
            assert r.status_code == 202, r.text
        outcomes = [o["outcome"] for o in r.json()["outcomes"]]
        assert outcomes == ["duplicate"]         # the same alarm, delivered twice
        # refused: tampered, wrong key, expired certificate, certificate from elsewhere, foreign topic, no signature
        good = certs.sign(_notification(_alarm()))
        cases = [
            ({**good, "Message": _alarm().replace("checkout", "payments")}, 401, "does not match"),
            (certs.sign(_notification(_alarm()), key=certs.expired_key), 401, "does not match"),
            (certs.sign(_notification(_alarm()), key=certs.expired_key, cert="/expired.pem"), 401, "not valid now"),
            ({**good, "SigningCertURL": "http://127.0.0.2:1/evil.pem"}, 401, "not an allowed"),
            ({**good, "SigningCertURL": "https://evil.example.com/cert.pem"}, 401, "not an allowed"),
            (certs.sign({**_notification(_alarm()), "TopicArn": TOPIC + "-other"}), 403, "topic is not allowed"),
            ({k: v for k, v in good.items() if k != "Signature"}, 401, "no Signature"),
            ({**good, "SignatureVersion": "3"}, 401, "SignatureVersion"),
            ({**good, "Signature": "%%%"}, 401, "not base64"),
            # published more than an hour ago (SNS retries for at most 3,600 s) or ahead of the clock: replays
            (certs.sign({**_notification(_alarm()), "Timestamp": _sns_time(3700)}), 401, "a replay"),
            (certs.sign({**_notification(_alarm()), "Timestamp": _sns_time(-3600)}), 401, "in the future"),
            # a certificate that cannot be fetched: the message cannot be verified, a 4xx (was 502)
            (certs.sign(_notification(_alarm()), cert="/missing.pem"), 401, "answered HTTP 404"),
            ({**good, "SigningCertURL": "http://127.0.0.1:1/gone.pem"}, 401, "could not fetch"),
            ({**good, "Timestamp": "yesterday"}, 400, "not an RFC 3339 time"),
        ]
        for msg, status, text in cases:
            r = c.post(url, content=json.dumps(msg), headers=hdr)
            assert r.status_code == status and text in r.json()["error"], (text, r.status_code, r.text)
        r = c.post(url, content=json.dumps(good), headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
        assert r.status_code == 400 and "does not match" in r.json()["error"]
        # OK resolves the alarm
        r = c.post(url, content=json.dumps(certs.sign(_notification(_alarm("OK"), msg_id="m3"))), headers=hdr)
        assert r.json()["outcomes"][0]["outcome"] == "resolved"
        # a subscription confirmation is verified, then confirmed by visiting SubscribeURL (auto_confirm)
        sub = certs.sign({"Type": "SubscriptionConfirmation", "MessageId": "s1", "Token": "2336412f37",
                          "TopicArn": TOPIC, "Message": "You have chosen to subscribe...",
                          "SubscribeURL": certs.base + "/confirm?Action=ConfirmSubscription&Token=2336412f37",
                          "Timestamp": _sns_time()})
        r = c.post(url, content=json.dumps(sub), headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
        assert r.status_code == 202 and r.json()["outcomes"][0]["outcome"] == "subscription-confirmed"
        assert certs.confirmed == ["/confirm?Action=ConfirmSubscription&Token=2336412f37"]
    incidents = live.state.list_incidents("aws")
    assert len(incidents) == 1 and incidents[0].source == "cloudwatch" and incidents[0].status.value == "resolved"
    a = live.state.get_incident(incidents[0].id, "aws").alerts[0]
    assert a.metric == "HTTPCode_Target_5XX_Count" and a.resource == "app/checkout/50dc6c495c0c9188"
    assert a.starts_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert any(e["action"] == "sns-subscription-confirmed" for e in live.state.audit_log("aws"))


# -- generic --------------------------------------------------------------------------------------
def test_generic_hmac_webhook(live):
    secret = "generic-secret-0123456789abcdef"
    _space(live, "gen", generic=({}, secret))

    def sign(body: bytes, ts: int | None = None) -> dict:
        ts = int(time.time()) if ts is None else ts
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return {"X-Vigil-Timestamp": str(ts), "X-Vigil-Signature": f"sha256={mac}"}

    body = json.dumps({"alerts": [{"title": "queue backlog", "resource": "worker", "metric": "backlog",
                                   "labels": {"team": "data"}, "at": "2024-05-01T12:00:00Z"},
                                  {"title": "worker restarts", "fingerprint": "restarts"}]}).encode()
    with live.client() as c:
        r = c.post("/v1/spaces/gen/webhooks/generic", content=body, headers=sign(body))
        assert r.status_code == 202 and [o["outcome"] for o in r.json()["outcomes"]] == ["new-incident", "grouped"]
        assert c.post("/v1/spaces/gen/webhooks/generic", content=body,
                      headers=sign(body, int(time.time()) - 600)).status_code == 401          # replay
        bad = sign(body)
        last = bad["X-Vigil-Signature"][-1]
        bad["X-Vigil-Signature"] = bad["X-Vigil-Signature"][:-1] + ("1" if last == "0" else "0")
        assert c.post("/v1/spaces/gen/webhooks/generic", content=body, headers=bad).status_code == 401
        for payload, msg in ((b"{}", "'title'"), (b'{"alerts": []}', "send 1 to"), (b'"x"', "must be an object")):
            r = c.post("/v1/spaces/gen/webhooks/generic", content=payload, headers=sign(payload))
            assert r.status_code == 400 and msg in r.json()["error"], r.text
    inc = live.state.get_incident(live.state.list_incidents("gen")[0].id, "gen")
    assert [a.fingerprint for a in inc.alerts][1] == "generic:restarts" and inc.alerts[0].resource == "worker"


def test_secrets_are_never_returned_nor_logged(live, caplog):
    op, _ = _space(live, "sec")
    admin = live.token("sec", Role.ADMIN)
    secret = "super-secret-value-0123456789"
    with live.client(admin) as c:
        r = c.put("/v1/spaces/sec/integrations/pagerduty", json={"secret": secret})
        assert r.status_code == 200 and r.json()["secret_set"] is True and secret not in r.text
        assert secret not in c.get("/v1/spaces/sec/integrations").text
        assert secret not in c.get("/v1/spaces/sec/audit").text
        r = c.put("/v1/spaces/sec/integrations/generic", json={"secret_env": "VIGIL_SECRET_TEST_GENERIC"})
        assert r.json()["config"] == {"secret_env": "VIGIL_SECRET_TEST_GENERIC"}
        assert c.put("/v1/spaces/sec/integrations/sns", json={}).status_code == 400
        assert c.put("/v1/spaces/sec/integrations/pagerduty", json={"secret": "short"}).status_code == 422
        assert c.put("/v1/spaces/sec/integrations/alertmanager", json={"secret": secret}).status_code == 400
    # secret_env: the secret lives in the server's environment (unset here: the webhook is refused)
    body = b'{"title": "x"}'
    with live.client() as c:
        mac = hmac.new(b"anything-at-all-0000", b"1." + body, hashlib.sha256).hexdigest()
        r = c.post("/v1/spaces/sec/webhooks/generic", content=body,
                   headers={"X-Vigil-Timestamp": "1", "X-Vigil-Signature": f"sha256={mac}"})
        assert r.status_code == 403
    assert secret not in caplog.text and op not in caplog.text


def test_integration_secret_env_follows_the_sources_rule(live, monkeypatch):
    """An integration's secret_env names only variables a source could (VIGIL_SECRET_ENV_PREFIXES, default
    VIGIL_SECRET_): otherwise a space admin confirms a guessed value of any server variable by signing a
    delivery with it (PUT {"secret_env": "HOME"}, then a delivery signed with "/root" was accepted)."""
    import os

    live.space("envs")
    admin = live.token("envs", Role.ADMIN)
    home = os.environ.get("HOME") or "/root"

    def signed(body: bytes, key: str) -> dict:
        ts = int(time.time())
        mac = hmac.new(key.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return {"X-Vigil-Timestamp": str(ts), "X-Vigil-Signature": f"sha256={mac}"}

    body = b'{"title": "guess"}'
    with live.client(admin) as c:
        for name in ("HOME", "PATH", "VIGIL_TEST_X"):
            r = c.put("/v1/spaces/envs/integrations/generic", json={"secret_env": name})
            assert r.status_code == 422 and "VIGIL_SECRET_ENV_PREFIXES" in r.json()["error"], r.text
            assert "\n" not in r.json()["error"]
        assert c.get("/v1/spaces/envs/integrations").json() == []          # nothing stored
    # a row stored before the rule (or by a looser server) still does not read HOME
    live.state.put_integration("envs", "generic", {"secret_env": "HOME"}, None)
    with live.client() as c:
        r = c.post("/v1/spaces/envs/webhooks/generic", content=body, headers=signed(body, home))
        assert r.status_code == 403 and "not enabled" in r.json()["error"], r.text
    # an allowed variable works end to end
    monkeypatch.setenv("VIGIL_SECRET_ENVS_GENERIC", "allowed-secret-0123456789")
    with live.client(admin) as c:
        assert c.put("/v1/spaces/envs/integrations/generic",
                     json={"secret_env": "VIGIL_SECRET_ENVS_GENERIC"}).status_code == 200
    with live.client() as c:
        r = c.post("/v1/spaces/envs/webhooks/generic", content=body, headers=signed(body, "allowed-secret-0123456789"))
        assert r.status_code == 202, r.text
        assert c.post("/v1/spaces/envs/webhooks/generic", content=body,
                      headers=signed(body, home)).status_code == 401


def test_body_limits_are_the_ones_the_readme_states(live):
    """The README's limits are the server's: API bodies 1 MiB, alert webhooks 8 MiB (a storm's Alertmanager
    group), OTLP 16 MiB as sent and 64 MiB decompressed; and a webhook delivery between 1 and 8 MiB is taken."""
    import re
    from pathlib import Path

    from vigil.server.settings import ServerSettings

    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    stated = {name: int(mib) << 20 for mib, name in re.findall(r"over (\d+) MiB \(`(VIGIL_MAX_\w+)`", text)}
    m = re.search(r"OTLP requests over (\d+) MiB as sent or (\d+) MiB decompressed", text)
    assert m, "the README no longer states the OTLP limits"
    stated["VIGIL_MAX_OTLP_BYTES"], stated["VIGIL_MAX_OTLP_DECODED_BYTES"] = int(m[1]) << 20, int(m[2]) << 20
    d = ServerSettings()
    assert stated == {"VIGIL_MAX_BODY_BYTES": d.max_body_bytes, "VIGIL_MAX_WEBHOOK_BYTES": d.max_webhook_bytes,
                      "VIGIL_MAX_OTLP_BYTES": d.max_otlp_bytes,
                      "VIGIL_MAX_OTLP_DECODED_BYTES": d.max_otlp_decoded_bytes}, stated
    op, _ = _space(live, "limits")
    pad = {f"detail{k}": "x" * 800 for k in range(8)}        # big labels: a real storm's group is this size
    big = _am([_am_alert(f"l{i}", "Big", service=f"svc{i % 7}", **pad) for i in range(200)])
    body = json.dumps(big).encode()
    assert 1 << 20 < len(body) < 8 << 20
    with live.client(op) as c:
        r = c.post("/v1/spaces/limits/webhooks/alertmanager", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 202 and r.json()["accepted"] == 200, r.text[:300]
        r = c.post("/v1/spaces/limits/webhooks/alertmanager", content=b" " * ((8 << 20) + 1),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "larger than" in r.json()["error"]
        r = c.post("/v1/spaces/limits/investigations", content=b" " * ((1 << 20) + 1),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413
