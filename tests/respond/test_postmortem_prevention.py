"""The post-incident report (Markdown, HTML, PDF) and prevention from history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from respond.kit import T0, concluded, setup
from vigil.model import Alert, Edge, Evidence, EvidenceKind, FaultKind, Hypothesis, Topology
from vigil.respond import postmortem, prevention

CAUSE = {"hypothesis_id": "", "rank": 1, "suspect": "orders-api", "fault_kind": "error", "via_dependency": False,
         "symptom": "frontend", "chain": ["orders-api", "frontend"],
         "statement": "deploy of orders-api by alice at 2026-12-04 11:58:30Z (90 s before the onset): GitHub "
                      "deployment 7; changed keys DATABSE_URL -> orders-api error -> frontend",
         "change": {"resource": "orders-api", "at": "2026-12-04T11:58:30Z", "kind": "deploy",
                    "description": "GitHub deployment 7 of acme/orders-api main@abc1234 to production",
                    "author": "alice", "lead_s": 90.0, "detail": {"source": "github", "sha": "abc1234",
                                                                 "keys": ["DATABSE_URL"]}}}


class Topo:
    """A source with a topology and nothing else (the embedded store has none for this space)."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def topology(self, space):
        return Topology(edges=[Edge(src="frontend", dst="orders-api"), Edge(src="orders-api", dst="db"),
                               Edge(src="checkout", dst="orders-api"), Edge(src="frontend", dst="checkout")])


def test_the_report_lists_timeline_impact_cause_actions_and_recommendations(database_url):
    st, svc = setup(database_url)
    svc.sources = Topo(svc.sources)
    alert = Alert(id="a", title="Checkout errors", at=T0 + timedelta(minutes=3))
    inv = concluded(st, "shop", alert=alert, cause=CAUSE)
    svc.store.propose("shop", inv, "", "webhook", {"operation": "rollback", "service": "orders-api"}, "h" * 64,
                      "ask the deployer to rollback orders-api", {}, "vigil")
    data = postmortem.gather(svc, "shop", inv)
    kinds = [e.kind for e in data.timeline]
    assert "alert" in kinds and "onset" in kinds and "investigation" in kinds and "action" in kinds
    assert data.cause is not None and data.cause.change.author == "alice"
    assert ("orders-api", "root cause (error)") in data.impact and any(s == "checkout" for s, _ in data.impact)
    md = postmortem.render(data, "md").decode()
    assert "## Timeline" in md and "## Impact" in md and "## Root cause" in md and "## Actions taken" in md
    assert "deploy of orders-api by alice" in md and "ask the deployer to rollback orders-api" in md
    assert "canary" in md                                  # the deploy practice recommendation
    html = postmortem.render(data, "html").decode()
    assert html.startswith("<!doctype html>") and "<script" not in html and "Root cause" in html
    pdf = postmortem.render(data, "pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and len(pdf) > 1500
    j = json.loads(postmortem.render(data, "json"))
    assert j["cause"]["change"]["author"] == "alice" and j["timeline"]


def test_report_escapes_hostile_telemetry(database_url):
    st, svc = setup(database_url)
    inv = concluded(st, "shop", resource="<img src=x onerror=alert(1)>")
    data = postmortem.gather(svc, "shop", inv)
    assert "<img" not in postmortem.render(data, "html").decode()
    assert "<img" not in postmortem.render(data, "md").decode()
    assert postmortem.render(data, "pdf").startswith(b"%PDF-")


def test_prevention_finds_recurring_causes_gaps_spofs_and_deploy_practice(database_url):
    st, svc = setup(database_url)
    svc.sources = Topo(svc.sources)
    late = Alert(id="a", title="late", at=T0)
    ev = [Evidence(kind=EvidenceKind.LOG, resource="orders-api", title="KeyError",
                   detail={"first_ts": (T0 - timedelta(seconds=240)).timestamp()})]
    ids = []
    for _ in range(3):
        inv = concluded(st, "shop", alert=late, cause=CAUSE)
        h = st.hypotheses(inv)[0]
        st.replace_hypotheses(inv, [h.model_copy(update={"id": "", "evidence": ev})])
        ids.append(inv)
    manual = concluded(st, "shop", resource="db", kind=FaultKind.MEMORY)
    items = {i["key"]: i for i in prevention.analyse(svc, "shop")}
    rec = items["recurring:orders-api:error"]
    assert rec["category"] == "recurring-cause" and sorted(rec["investigations"]) == sorted(ids)
    assert items["late-alert:orders-api"]["title"].startswith("alerts fired up to 240 s after")
    assert items["no-alert:db"]["investigations"] == [manual]
    assert items["deploy-practice:orders-api"]["category"] == "deploy-practice"
    assert "spof:orders-api" in items and "frontend" not in [k.split(":")[1] for k in items if k.startswith("spof")]
    scores = [i["score"] for i in prevention.analyse(svc, "shop")]
    assert scores == sorted(scores, reverse=True) and all(
        i["score"] == i["severity"] * i["likelihood"] * i["detectability"] for i in items.values())
    # the backlog keeps what people decided across refreshes
    back = prevention.refresh(svc, "shop", "token:op")
    first = next(i for i in back if i["key"] == "spof:orders-api")
    svc.store.set_backlog_status("shop", first["id"], "planned", "add a replica", "token:op")
    again = {i["key"]: i for i in prevention.refresh(svc, "shop", "token:op")}
    assert again["spof:orders-api"]["status"] == "planned" and again["spof:orders-api"]["note"] == "add a replica"


def test_config_drift_between_git_manifests_and_the_live_cluster(database_url, tmp_path, datasets, monkeypatch):
    from sources.k8s_standin import K8sStandIn, build_cluster

    from vigil.model import AgentSpace  # noqa: F401
    repo = tmp_path / "manifests"
    (repo / "apps").mkdir(parents=True)
    (repo / "apps" / "currency.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: currencyservice\n  namespace: default\nspec:\n"
        "  replicas: 3\n  template:\n    spec:\n      containers:\n        - name: server\n"
        "          image: gcr.io/google-samples/microservices-demo/currencyservice:v0.3.7\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: currencyservice\n")
    (repo / "apps" / "cart.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cartservice\nspec:\n  replicas: 1\n  template:\n"
        "    spec:\n      containers:\n        - name: server\n"
        "          image: gcr.io/google-samples/microservices-demo/cartservice:v0.3.7\n")
    import subprocess
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    monkeypatch.setenv("VIGIL_SECRET_K8S", "k8s-token-0123456789")
    with K8sStandIn(build_cluster(datasets / "nezha" / "rca_data" / "2022-08-22" / "metric"),
                    token="k8s-token-0123456789") as k:
        from vigil.app import App
        from vigil.config import Settings
        app = App(Settings(home=tmp_path / "h", database_url=database_url, telemetry_path=tmp_path / "t.duckdb",
                           reports_dir=tmp_path / "r").ensure())
        from vigil.model import AgentSpace as Space
        app.state.put_space(Space(id="shop", name="shop"))
        app.state.put_source("shop", "manifests", "git", {"path": str(repo)})
        app.state.put_source("shop", "cluster", "kubernetes", {"api_url": k.url, "token": {"env": "VIGIL_SECRET_K8S"}})
        from vigil.respond.service import RespondService
        svc = RespondService(app.state, app.sources)
        items = {i["key"]: i for i in prevention.drift(svc, "shop")}
        assert list(items) == ["drift:default/currencyservice"]
        d = items["drift:default/currencyservice"]
        assert "replicas 3 in git, 1 live" in d["detail"]
        assert "currencyservice:v0.3.7 in git, gcr.io/google-samples/microservices-demo/currencyservice:v0.3.8 live" \
            in d["detail"]
        app.close()


def test_hypothesis_fixture_is_sane():
    h = Hypothesis(rank=1, resource="x", fault_kind=FaultKind.ERROR, confidence=0.5)
    assert h.rank == 1 and datetime.now(UTC) > T0 - timedelta(days=3650)


def test_cloudformation_drift_between_git_and_the_stacks(database_url, tmp_path, monkeypatch):
    """moto's server runs a stack made from the CloudWatch connector tests' template; git holds a newer one.
    moto keeps its state per process: the stack has its own names and is deleted at the end."""
    import subprocess
    import uuid

    import boto3
    from moto.server import ThreadedMotoServer
    from sources.promkit import free_port
    from sources.test_cloudwatch import TEMPLATE

    from vigil.app import App
    from vigil.config import Settings
    from vigil.model import AgentSpace
    from vigil.respond.service import RespondService
    stack = f"drift{uuid.uuid4().hex[:8]}"
    template = TEMPLATE.replace("orders", stack)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    cfn = boto3.client("cloudformation", endpoint_url=url, region_name="eu-west-1", aws_access_key_id="AKIDTEST",
                       aws_secret_access_key="not-a-real-secret")
    try:
        cfn.create_stack(StackName=stack, TemplateBody=template)
        repo = tmp_path / "infra"
        (repo / "stacks").mkdir(parents=True)
        (repo / "stacks" / f"{stack}.yaml").write_text(
            template.replace("maxReceiveCount: 3", "maxReceiveCount: 5")
            + f"  OrdersAlarmTopic:\n    Type: AWS::SNS::Topic\n    Properties: {{TopicName: {stack}-alarms}}\n")
        (repo / "stacks" / "no-such-stack.yaml").write_text(template)          # not compared
        subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
        monkeypatch.setenv("CW_KEY_ID", "AKIDTEST")
        monkeypatch.setenv("CW_SECRET", "not-a-real-secret")
        app = App(Settings(home=tmp_path / "h", database_url=database_url, telemetry_path=tmp_path / "t.duckdb",
                           reports_dir=tmp_path / "r").ensure())
        app.state.put_space(AgentSpace(id="shop", name="shop"))
        app.state.put_source("shop", "infra", "git", {"path": str(repo)})
        app.state.put_source("shop", "aws", "cloudwatch", {
            "region": "eu-west-1", "endpoint_url": url, "access_key_id": {"env": "CW_KEY_ID"},
            "secret_access_key": {"env": "CW_SECRET"}, "timeout_s": 60, "stacks": [stack]})
        conns, problems = app.sources.connectors("shop")
        assert problems == [] and sorted(c.kind for c in conns) == ["cloudwatch", "git"]
        items = prevention.drift(RespondService(app.state, app.sources), "shop")
        assert [i["key"] for i in items] == [f"drift:stack/{stack}"]
        d = items[0]
        assert d["title"] == f"stack {stack} differs from stacks/{stack}.yaml" and d["category"] == "config-drift"
        assert "OrdersAlarmTopic is in git, not in the stack" in d["detail"]
        assert "OrdersQueue properties differ: RedrivePolicy" in d["detail"]
        assert "OrdersDLQ" not in d["detail"] and "OrdersTopic " not in d["detail"]
        app.close()
    finally:
        cfn.delete_stack(StackName=stack)
        server.stop()
