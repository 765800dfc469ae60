"""The authorization matrix, over every endpoint of the API, against a real server on loopback:

- no token, a malformed, unknown or revoked token: 401;
- a token of space B on space A's endpoints: 403, and nothing in A changes;
- a token of space A naming B's objects through A's endpoints: 404, and nothing in B changes;
- every role below the endpoint's: 403; the endpoint's role: success (so the matrix is not vacuous);
- OTLP writes land in the token's own space only; signed webhooks need that space's own secret.

A route added without an entry here fails ``test_every_route_is_in_the_matrix``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from e2e.kit import live_server, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from vigil.api import create_app
from vigil.integrations import generic, pagerduty
from vigil.model import (
    AgentSpace,
    FaultKind,
    Hypothesis,
    IncomingAlert,
    InvestigationStatus,
    Role,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.services.alerts import accept_alerts

SPACES = ("alpha", "beta")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PUBLIC_API = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}   # besides /openapi.json and /docs
SIGNED = {"pagerduty", "sns", "generic", "github", "gitlab"}     # verified by signature, not by token


def _spans_body() -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "authz-svc"
    sp = rs.scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = uuid.uuid4().bytes, uuid.uuid4().bytes[:8], "GET /"
    sp.start_time_unix_nano, sp.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_005_000_000
    return req.SerializeToString()


class Ctx:
    """Objects of both spaces, and makers of fresh ones for calls that consume them."""

    def __init__(self, live) -> None:
        self.live = live
        self.st = live.state
        self.tokens: dict[tuple[str, Role], str] = {}
        self.ids: dict[str, dict[str, str]] = {}
        for space in SPACES:
            self.st.put_space(AgentSpace(id=space, name=space))
            for role in Role:
                self.tokens[(space, role)] = self.st.create_token(space, role, name=f"{space}-{role.value}")[0]
            inv = self.finished_investigation(space)
            hyp = self.st.hypotheses(inv)[0].id
            out = accept_alerts(self.st, space, [IncomingAlert(source="test", fingerprint=f"fp-{space}", title="x",
                                                              at=T0)], timedelta(hours=1), timedelta(minutes=5))
            self.st.put_source(space, "otel", "otlp", {"resource_attribute": "service.name"})
            self.st.put_integration(space, "generic", {}, f"{space}-generic-secret-0123456789")
            self.st.put_integration(space, "pagerduty", {}, f"{space}-pagerduty-secret-0123456")
            self.ids[space] = {"inv_id": inv, "hyp_id": hyp, "incident_id": out[0].incident_id}
            # respond: a directed action kind turned on (its deployer is not listening: runs fail, cleanly)
            live.runtime.respond.set_action(space, "webhook", True, {
                "url": "http://127.0.0.1:9/deploy", "secret": {"env": "VIGIL_SECRET_AUTHZ"}, "timeout_s": 2},
                "test", guard=False)

    def action(self, space: str) -> str:
        inv = self.ids[space]["inv_id"]
        return self.live.runtime.respond.propose(space, inv, "webhook", {"operation": "restart", "service":
                                                                         f"s{uuid.uuid4().hex[:8]}"}, "test")["id"]

    def approved(self, space: str) -> dict:
        aid = self.action(space)
        token, _ = self.live.runtime.respond.approve(space, aid, "test")
        return {"action_id": aid, "json": {"token": token}}

    def backlog_item(self, space: str) -> str:
        items = self.live.runtime.respond.store.upsert_backlog(space, [{
            "key": f"k{uuid.uuid4().hex[:8]}", "category": "monitoring-gap", "title": "t", "detail": "", "severity": 1,
            "likelihood": 1, "detectability": 1, "score": 1.0, "investigations": []}])
        return items[-1]["id"]

    def skill(self, space: str) -> str:
        name = f"rb{uuid.uuid4().hex[:8]}"
        self.live.runtime.respond.store.put_skill(space, name, "t", "b", {}, False, "test")
        return name

    def finished_investigation(self, space: str) -> str:
        inv = self.st.create_investigation(space, Trigger(kind=TriggerKind.MANUAL, text="authz"),
                                           Window.around(T0, timedelta(hours=1), timedelta(minutes=5)))
        self.st.set_status(inv.id, InvestigationStatus.RUNNING)
        self.st.replace_hypotheses(inv.id, [Hypothesis(rank=1, resource="cart", fault_kind=FaultKind.CPU,
                                                       confidence=0.6)])
        self.st.set_status(inv.id, InvestigationStatus.CONCLUDED, summary="cart")
        return inv.id

    def queued_investigation(self, space: str) -> str:
        # not in the job queue: stays queued, so it can be cancelled
        return self.st.create_investigation(space, Trigger(kind=TriggerKind.MANUAL),
                                            Window.around(T0, timedelta(hours=1), timedelta(minutes=5))).id

    def token_id(self, space: str) -> str:
        return self.st.create_token(space, Role.VIEWER, name="to-revoke")[1].id

    def source(self, space: str) -> str:
        name = f"s{uuid.uuid4().hex[:8]}"
        self.st.put_source(space, name, "otlp", {})
        return name

    def integration(self, space: str) -> str:
        self.st.put_integration(space, "grafana", {}, "grafana-secret-0123456789abcdef")
        return "grafana"

    def idle(self) -> None:
        """Wait until the workers have run what the previous calls queued, and write the alert notes held
        for later (``server.alertnotes``): neither may land in the middle of a before/after comparison."""
        wait_for(lambda: (lambda d: d["queued"] == 0 and d["running"] == 0)(self.st.queue_depth()), 60, 0.05,
                 "the investigation queue to drain")
        self.live.runtime.alert_notes.flush(everything=True)

    def snapshot(self, space: str) -> str:
        """Everything a space holds, to prove a refused call changed nothing."""
        self.idle()
        st = self.st
        invs = st.list_investigations(space, limit=1000)
        return json.dumps({
            "space": st.get_space(space).model_dump(mode="json"),
            "tokens": [t.model_dump(mode="json") for t in st.list_tokens(space)],
            "sources": st.list_sources(space), "integrations": st.list_integrations(space),
            "audit": len(st.audit_log(space, limit=100_000)),
            "investigations": [(i.id, i.status.value, len(st.journal(i.id)),
                                [(h.state.value, h.note) for h in st.hypotheses(i.id)]) for i in invs],
            "incidents": [(i.id, i.alert_count, i.duplicates) for i in st.list_incidents(space, limit=1000)],
            "respond": [(a["id"], a["status"]) for a in self.live.runtime.respond.store.list_actions(space, limit=1000)]
            + self.live.runtime.respond.store.list_settings(space) + self.live.runtime.respond.store.backlog(space)
            + self.live.runtime.respond.store.skills(space),
            "telemetry": self.live.runtime.telemetry.counts(space)}, default=str, sort_keys=True)


def _pd_body() -> bytes:
    return json.dumps({"event": {"id": "e1", "event_type": "incident.triggered", "occurred_at": "2024-05-01T12:00:00Z",
                                 "data": {"id": f"P{uuid.uuid4().hex[:6]}", "title": "pd", "created_at":
                                          "2024-05-01T12:00:00Z"}}}).encode()


# (method, path) -> (role needed, builder(ctx, object space) -> request parts)
SPEC = {
    ("GET", "/v1/spaces"): (Role.VIEWER, lambda c, s: {}),
    ("GET", "/v1/spaces/{space}"): (Role.VIEWER, lambda c, s: {}),
    ("PATCH", "/v1/spaces/{space}"): (Role.ADMIN, lambda c, s: {"json": {"description": "patched"}}),
    ("GET", "/v1/spaces/{space}/tokens"): (Role.ADMIN, lambda c, s: {}),
    ("POST", "/v1/spaces/{space}/tokens"): (Role.ADMIN, lambda c, s: {"json": {"role": "viewer", "name": "n"}}),
    ("DELETE", "/v1/spaces/{space}/tokens/{token_id}"): (Role.ADMIN, lambda c, s: {"token_id": c.token_id(s)}),
    ("GET", "/v1/spaces/{space}/sources"): (Role.VIEWER, lambda c, s: {}),
    ("PUT", "/v1/spaces/{space}/sources/{name}"): (Role.ADMIN, lambda c, s: {
        "name": "otel", "json": {"kind": "otlp", "config": {"resource_attribute": "k8s.deployment.name"}}}),
    ("DELETE", "/v1/spaces/{space}/sources/{name}"): (Role.ADMIN, lambda c, s: {"name": c.source(s)}),
    ("POST", "/v1/spaces/{space}/sources/{name}/check"): (Role.OPERATOR, lambda c, s: {"name": c.source(s)}),
    ("GET", "/v1/spaces/{space}/topology"): (Role.VIEWER, lambda c, s: {}),
    ("GET", "/v1/spaces/{space}/integrations"): (Role.ADMIN, lambda c, s: {}),
    ("PUT", "/v1/spaces/{space}/integrations/{kind}"): (Role.ADMIN, lambda c, s: {
        "kind": "generic", "json": {"secret": "a-new-secret-0123456789"}}),
    ("DELETE", "/v1/spaces/{space}/integrations/{kind}"): (Role.ADMIN, lambda c, s: {"kind": c.integration(s)}),
    ("GET", "/v1/spaces/{space}/audit"): (Role.ADMIN, lambda c, s: {}),
    ("GET", "/v1/spaces/{space}/incidents"): (Role.VIEWER, lambda c, s: {}),
    ("GET", "/v1/spaces/{space}/incidents/{incident_id}"): (Role.VIEWER, lambda c, s: {
        "incident_id": c.ids[s]["incident_id"]}),
    ("GET", "/v1/spaces/{space}/investigations"): (Role.VIEWER, lambda c, s: {}),
    ("POST", "/v1/spaces/{space}/investigations"): (Role.OPERATOR, lambda c, s: {
        "json": {"starting_point": "free-text", "at": "2024-05-01T12:00:00Z", "text": "checkout is slow"}}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}"): (Role.VIEWER, lambda c, s: {"inv_id": c.ids[s]["inv_id"]}),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/cancel"): (Role.OPERATOR, lambda c, s: {
        "inv_id": c.queued_investigation(s)}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/journal"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"]}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/events"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"]}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/hypotheses"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"]}),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/hypotheses/{hyp_id}/accept"): (Role.OPERATOR, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "hyp_id": c.ids[s]["hyp_id"], "json": {"note": "confirmed"}}),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/hypotheses/{hyp_id}/discard"): (Role.OPERATOR, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "hyp_id": c.ids[s]["hyp_id"]}),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/hypotheses/{hyp_id}/note"): (Role.OPERATOR, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "hyp_id": c.ids[s]["hyp_id"], "json": {"note": "looked at it"}}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/report"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "params": {"format": "json"}}),
    ("POST", "/v1/traces"): (Role.OPERATOR, lambda c, s: {
        "content": _spans_body(), "headers": {"Content-Type": "application/x-protobuf"}}),
    ("POST", "/v1/logs"): (Role.OPERATOR, lambda c, s: {"json": {"resourceLogs": []}}),
    ("POST", "/v1/metrics"): (Role.OPERATOR, lambda c, s: {"json": {"resourceMetrics": []}}),
    ("POST", "/v1/spaces/{space}/webhooks/alertmanager"): (Role.OPERATOR, lambda c, s: {"json": {
        "version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A"},
                                                        "startsAt": "2024-05-01T12:00:00Z"}]}}),
    ("POST", "/v1/spaces/{space}/webhooks/grafana"): (Role.OPERATOR, lambda c, s: {"json": {
        "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "G"}}]}}),
    ("POST", "/v1/spaces/{space}/webhooks/pagerduty"): ("signed", None),
    ("POST", "/v1/spaces/{space}/webhooks/sns"): ("signed", None),
    ("POST", "/v1/spaces/{space}/webhooks/generic"): ("signed", None),
    ("POST", "/v1/spaces/{space}/webhooks/github"): ("signed", None),
    ("POST", "/v1/spaces/{space}/webhooks/gitlab"): ("signed", None),
    # respond and prevent
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/mitigation"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"]}),
    ("GET", "/v1/spaces/{space}/action-settings"): (Role.ADMIN, lambda c, s: {}),
    ("PUT", "/v1/spaces/{space}/action-settings/{kind}"): (Role.ADMIN, lambda c, s: {"kind": "webhook", "json": {
        "enabled": True, "config": {"url": "http://127.0.0.1:9/deploy", "secret": {"env": "VIGIL_SECRET_AUTHZ"},
                                    "timeout_s": 2}}}),
    ("GET", "/v1/spaces/{space}/notifier-settings"): (Role.ADMIN, lambda c, s: {}),
    ("PUT", "/v1/spaces/{space}/notifier-settings/{kind}"): (Role.ADMIN, lambda c, s: {"kind": "webhook", "json": {
        "enabled": False, "config": {"url": "http://127.0.0.1:9/hook", "secret": {"env": "VIGIL_SECRET_AUTHZ"}}}}),
    ("PUT", "/v1/spaces/{space}/model-settings"): (Role.ADMIN, lambda c, s: {"json": {
        "enabled": False, "config": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}}),
    ("GET", "/v1/spaces/{space}/outbox"): (Role.ADMIN, lambda c, s: {}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/actions"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"]}),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/actions"): (Role.OPERATOR, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "json": {"kind": "webhook", "args": {"operation": "restart",
                                                                           "service": f"s{uuid.uuid4().hex[:8]}"}}}),
    ("GET", "/v1/spaces/{space}/actions/{action_id}"): (Role.VIEWER, lambda c, s: {"action_id": c.action(s)}),
    ("POST", "/v1/spaces/{space}/actions/{action_id}/approve"): (Role.OPERATOR, lambda c, s: {
        "action_id": c.action(s)}),
    ("POST", "/v1/spaces/{space}/actions/{action_id}/run"): (Role.OPERATOR, lambda c, s: c.approved(s)),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/chat"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "json": {"question": "which logs did you analyze?"}}),
    ("POST", "/v1/spaces/{space}/investigations/{inv_id}/rerun"): (Role.OPERATOR, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "json": {"exclude": ["cart"]}}),
    ("GET", "/v1/spaces/{space}/investigations/{inv_id}/postmortem"): (Role.VIEWER, lambda c, s: {
        "inv_id": c.ids[s]["inv_id"], "params": {"format": "md"}}),
    ("GET", "/v1/spaces/{space}/prevention"): (Role.VIEWER, lambda c, s: {}),
    ("POST", "/v1/spaces/{space}/prevention/refresh"): (Role.OPERATOR, lambda c, s: {}),
    ("PATCH", "/v1/spaces/{space}/prevention/{item_id}"): (Role.OPERATOR, lambda c, s: {
        "item_id": c.backlog_item(s), "json": {"status": "planned"}}),
    ("GET", "/v1/spaces/{space}/skills"): (Role.VIEWER, lambda c, s: {}),
    ("PUT", "/v1/spaces/{space}/skills/{name}"): (Role.ADMIN, lambda c, s: {"name": "db-runbook", "json": {
        "title": "DB", "body": "check the pool", "match": {"services": ["db"]}}}),
    ("DELETE", "/v1/spaces/{space}/skills/{name}"): (Role.ADMIN, lambda c, s: {"name": c.skill(s)}),
    ("POST", "/v1/spaces/{space}/slack/interactivity"): ("signed", None),
    ("POST", "/v1/spaces/{space}/slack/events"): ("signed", None),
}
TOKEN_ROUTES = [k for k, v in SPEC.items() if v[0] != "signed"]
OWN_SPACE = {("GET", "/v1/spaces"), ("POST", "/v1/traces"), ("POST", "/v1/logs"), ("POST", "/v1/metrics")}
ID_PARAMS = ("token_id", "name", "kind", "incident_id", "inv_id", "hyp_id", "action_id", "item_id")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("authz"), workers=1) as live:
        yield Ctx(live)


def _prepare(ctx: Ctx, method: str, path: str, token: str | None, path_space: str, obj_space: str,
             headers: dict | None = None) -> dict:
    """The request for a route (creating, in ``obj_space``, any object the call consumes)."""
    _role, build = SPEC[(method, path)]
    parts = dict(build(ctx, obj_space))
    url = path.replace("{space}", path_space)
    for p in ID_PARAMS:
        if "{" + p + "}" in url:
            url = url.replace("{" + p + "}", parts.pop(p))
    hdrs = {**parts.pop("headers", {}), **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    return {"method": method, "url": url, "headers": hdrs, **parts}


def _send(ctx: Ctx, req: dict):
    with ctx.live.client() as c:
        return c.request(**req)


def _call(ctx: Ctx, *args, **kw):
    return _send(ctx, _prepare(ctx, *args, **kw))


def test_every_route_is_in_the_matrix(ctx):
    spec = create_app(ctx.live.runtime, start=False).openapi()
    app_routes = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    assert app_routes == set(SPEC) | PUBLIC_API
    with ctx.live.client() as c:         # the public ones need no token and hold nothing of a space
        for method, path in PUBLIC_API:
            assert c.request(method, path).status_code == 200


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_no_bad_or_revoked_token_is_401(ctx, route):
    method, path = route
    revoked_secret, revoked = ctx.st.create_token("alpha", Role.ADMIN, name="revoked")
    ctx.st.revoke_token(revoked.id)
    for token, headers in ((None, None), ("vgl_not-a-real-token", None), (revoked_secret, None),
                           (None, {"Authorization": "Basic YWRtaW46YWRtaW4="}),
                           (None, {"Authorization": "Bearer"})):
        req = _prepare(ctx, method, path, token, "alpha", "alpha", headers)
        before = ctx.snapshot("alpha")
        r = _send(ctx, req)
        assert r.status_code == 401, (token, headers, r.status_code, r.text)
        assert set(r.json()) == {"error"} and "token" in r.json()["error"]
        assert r.headers.get("www-authenticate") == "Bearer"
        assert ctx.snapshot("alpha") == before


@pytest.mark.parametrize("route", [r for r in TOKEN_ROUTES if r not in OWN_SPACE], ids=lambda r: f"{r[0]} {r[1]}")
def test_a_token_of_another_space_is_refused_and_changes_nothing(ctx, route):
    method, path = route
    for role in Role:
        req = _prepare(ctx, method, path, ctx.tokens[("beta", role)], "alpha", "alpha")
        before = ctx.snapshot("alpha")
        r = _send(ctx, req)
        assert r.status_code == 403, (role, r.status_code, r.text)
        assert "not valid for space 'alpha'" in r.json()["error"]
        assert ctx.snapshot("alpha") == before


# PUT of a source or an integration names something to create in the caller's own space: no object of
# another space is named, so those two are covered by the tests above, not this one
FOREIGN_ID_ROUTES = [r for r in TOKEN_ROUTES if any("{" + p + "}" in r[1] for p in ID_PARAMS)
                     and not (r[0] == "PUT" and r[1].endswith(("/sources/{name}", "/integrations/{kind}",
                                                               "-settings/{kind}", "/skills/{name}")))]


@pytest.mark.parametrize("route", FOREIGN_ID_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_objects_of_another_space_are_not_found_through_your_own(ctx, route):
    method, path = route
    if path.endswith("/integrations/{kind}"):      # kinds are names, not ids: alpha must not have beta's kind
        if any(i["kind"] == "grafana" for i in ctx.st.list_integrations("alpha")):
            ctx.st.delete_integration("alpha", "grafana")
    req = _prepare(ctx, method, path, ctx.tokens[("alpha", Role.ADMIN)], "alpha", "beta")
    before_beta, before_alpha = ctx.snapshot("beta"), ctx.snapshot("alpha")
    r = _send(ctx, req)
    assert r.status_code == 404, (r.status_code, r.text)
    assert ctx.snapshot("beta") == before_beta and ctx.snapshot("alpha") == before_alpha


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_roles(ctx, route):
    method, path = route
    needed = SPEC[route][0]
    for role in Role:
        r = _call(ctx, method, path, ctx.tokens[("alpha", role)], "alpha", "alpha")
        if role.allows(needed):
            assert 200 <= r.status_code < 300, (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert f"needs the {needed.value} role" in r.json()["error"]


def test_otlp_lands_in_the_tokens_own_space_only(ctx):
    beta_before = ctx.live.runtime.telemetry.counts("beta")["spans"]
    alpha_before = ctx.live.runtime.telemetry.counts("alpha")["spans"]
    r = _call(ctx, "POST", "/v1/traces", ctx.tokens[("alpha", Role.OPERATOR)], "alpha", "alpha")
    assert r.status_code == 200
    assert ctx.live.runtime.telemetry.counts("alpha")["spans"] == alpha_before + 1
    assert ctx.live.runtime.telemetry.counts("beta")["spans"] == beta_before


def test_signed_webhooks_need_the_spaces_own_secret(ctx):
    body = json.dumps({"title": "disk full", "fingerprint": f"g-{uuid.uuid4().hex[:6]}"}).encode()
    for space in SPACES:     # (test_roles rotated alpha's generic secret)
        ctx.st.put_integration(space, "generic", {}, f"{space}-generic-secret-0123456789")
    with ctx.live.client() as c:
        before = ctx.snapshot("alpha")
        # beta's secret, alpha's endpoint
        r = c.post("/v1/spaces/alpha/webhooks/generic", content=body,
                   headers=generic.sign("beta-generic-secret-0123456789", body))
        assert r.status_code == 401 and "does not match" in r.json()["error"]
        r = c.post("/v1/spaces/alpha/webhooks/generic", content=body)           # unsigned
        assert r.status_code == 401 and "missing" in r.json()["error"]
        # a token (even admin) does not replace the signature
        r = c.post("/v1/spaces/alpha/webhooks/generic", content=body,
                   headers={"Authorization": f"Bearer {ctx.tokens[('alpha', Role.ADMIN)]}"})
        assert r.status_code == 401
        pd = _pd_body()
        sig = "v1=" + pagerduty.hmac_sha256_hex("beta-pagerduty-secret-0123456", pd)
        r = c.post("/v1/spaces/alpha/webhooks/pagerduty", content=pd, headers={pagerduty.HEADER: sig})
        assert r.status_code == 401
        # a space with no such integration, and a space that does not exist, answer alike
        r1 = c.post("/v1/spaces/alpha/webhooks/sns", content=b"{}")
        r2 = c.post("/v1/spaces/nosuchspace/webhooks/sns", content=b"{}")
        assert r1.status_code == r2.status_code == 403 and r1.json() == r2.json()
        assert ctx.snapshot("alpha") == before
        # the right secret works
        r = c.post("/v1/spaces/alpha/webhooks/generic", content=body,
                   headers=generic.sign("alpha-generic-secret-0123456789", body))
        assert r.status_code == 202, r.text
        sig = "v1=" + pagerduty.hmac_sha256_hex("alpha-pagerduty-secret-0123456", pd)
        assert c.post("/v1/spaces/alpha/webhooks/pagerduty", content=pd,
                      headers={pagerduty.HEADER: sig}).status_code == 202


def test_the_mcp_endpoint_needs_a_live_token(ctx):
    """/mcp (the MCP server, not in OpenAPI) checks the bearer token on every request like the API does;
    what each token may see there is tested in test_mcp_server.py."""
    revoked_secret, revoked = ctx.st.create_token("alpha", Role.ADMIN, name="revoked-mcp")
    ctx.st.revoke_token(revoked.id)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with ctx.live.client() as c:
        for token, headers in ((None, None), ("vgl_not-a-real-token", None), (revoked_secret, None),
                               (None, {"Authorization": "Basic YWRtaW46YWRtaW4="}), (None, {"Authorization": "Bearer"})):
            hdrs = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
            for method in ("POST", "GET", "DELETE"):
                before = ctx.snapshot("alpha")
                r = c.request(method, "/mcp", json=ping if method == "POST" else None, headers=hdrs)
                assert r.status_code == 401, (token, headers, method, r.status_code, r.text)
                assert set(r.json()) == {"error"} and "token" in r.json()["error"]
                assert r.headers.get("www-authenticate") == "Bearer"
                assert ctx.snapshot("alpha") == before
        r = c.post("/mcp", json=ping, headers={"Authorization": f"Bearer {ctx.tokens[('beta', Role.VIEWER)]}",
                                               "Accept": "application/json, text/event-stream"})
        assert r.status_code == 200 and r.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
