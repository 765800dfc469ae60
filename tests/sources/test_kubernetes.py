"""KubernetesConnector through the official client against a local stand-in of the API server whose
bodies follow the Kubernetes v1.31 API reference (see k8s_standin.py): no cluster can run here."""

from __future__ import annotations

import json
import time

import pytest

from sources.k8s_standin import INJECT, K8sStandIn, build_cluster
from sources.promkit import free_port
from vigil.errors import InputError
from vigil.model import EdgeKind, EdgeSource
from vigil.sources.connector import SourceError, build, validate_config

TOKEN = "k8s-test-token-0123456789"
START, END = INJECT - 1800, INJECT + 600


@pytest.fixture(scope="module")
def cluster(datasets):
    return build_cluster(datasets / "nezha" / "rca_data" / "2022-08-22" / "metric")


@pytest.fixture
def k8s(cluster):
    with K8sStandIn(cluster, token=TOKEN) as k:
        yield k


@pytest.fixture
def conn(k8s, monkeypatch):
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    c = build("k8s", "kubernetes", {"api_url": k8s.url, "token": {"env": "K8S_TOKEN"}, "namespaces": ["default"],
                                    "timeout_s": 5})
    yield c
    c.close()


def test_check_names_the_version(conn, k8s):
    assert conn.check() == f"Kubernetes v1.31.4 at {k8s.url} answered; reading default"


def test_rollouts_are_deploy_changes_with_the_image_change(conn, k8s):
    ch = conn.changes(START, END)
    assert list(ch.columns) == ["resource", "ts", "kind", "description", "author", "detail"]
    assert len(ch) == 1, ch                       # revision 1 of every deployment is a creation, not a change
    row = ch.iloc[0]
    assert row.resource == "currencyservice" and row.kind == "deploy" and row.ts == INJECT - 300
    assert "deployment default/currencyservice revision 2: server: " in row.description
    assert "currencyservice:v0.3.7 -> gcr.io/google-samples/microservices-demo/currencyservice:v0.3.8" in row.description
    assert "kubectl set image" in row.description
    assert json.loads(row.detail) == {"source": "kubernetes", "namespace": "default", "deployment": "currencyservice",
                                      "revision": 2, "previous_revision": 1, "images": {
                                          "server": "gcr.io/google-samples/microservices-demo/currencyservice:v0.3.8"}}
    # 11 ReplicaSets, at most 4 per page: the client followed `continue`
    rs_calls = [q for p, q in k8s.requests if p == "/apis/apps/v1/namespaces/default/replicasets"]
    assert len(rs_calls) == 3 and "continue" in rs_calls[1] and rs_calls[0]["limit"] == "500"
    assert conn.changes(INJECT - 100, END).empty


def test_warning_events_and_oom_kills_are_logs(conn, k8s):
    lg = conn.logs(START, END)
    assert list(lg.columns) == ["resource", "ts", "level", "body", "trace_id", "span_id"]
    got = [(r.resource, r.ts, r.level, r.body.split(":")[0]) for r in lg.itertuples()]
    assert got == [("frontend", INJECT + 40, "WARN", "Unhealthy"),
                   ("cartservice", INJECT + 80, "ERROR", "OOMKilled"),
                   ("cartservice", INJECT + 90, "WARN", "BackOff")]
    assert "Readiness probe failed: HTTP probe failed with statuscode: 500 (x3) [Pod default/frontend-" in lg.body[0]
    assert "container server of pod default/cartservice-" in lg.body[1] and "code 137" in lg.body[1]
    ev_calls = [q for p, q in k8s.requests if p == "/api/v1/namespaces/default/events"]
    assert ev_calls and all(q["fieldSelector"] == "type=Warning" for q in ev_calls)
    assert list(conn.logs(START, END, resources=["frontend"]).resource) == ["frontend"]
    assert len(conn.logs(START, END, contains="OOMKilled")) == 1
    assert len(conn.logs(START, END, limit=2)) == 2


def test_topology_service_workload_pod_node(conn):
    topo = conn.topology()
    kinds = {r.name: r.kind for r in topo.resources}
    services = {n for n, k in kinds.items() if k == "service"}
    assert services == {"adservice", "cartservice", "checkoutservice", "currencyservice", "emailservice", "frontend",
                        "paymentservice", "productcatalogservice", "recommendationservice", "shippingservice"}
    edges = {(e.src, e.dst, e.kind) for e in topo.edges}
    assert all(e.source == EdgeSource.KUBERNETES for e in topo.edges)
    assert ("frontend-external", "frontend", EdgeKind.DEPENDS_ON) in edges and kinds["frontend-external"] == "k8s-service"
    pod = next(n for n in kinds if n.startswith("pod:default/currencyservice-cf787dd48-"))
    assert ("currencyservice", pod, EdgeKind.RUNS_ON) in edges
    assert (pod, "node:33.33.33.227", EdgeKind.RUNS_ON) in edges         # the recording's node of currencyservice
    assert ("currencyservice", "node:33.33.33.227", EdgeKind.RUNS_ON) in edges
    attrs = {r.name: r.attributes for r in topo.resources}
    assert attrs["currencyservice"]["deployment"] == "currencyservice" and attrs["frontend"]["k8s_service"] == "frontend"
    assert "kubernetes" not in kinds and not any("coredns" in n for n in kinds)   # no selector; other namespace
    assert topo.callees("frontend-external") == ["frontend"]


def test_all_namespaces_and_kubeconfig(cluster, k8s, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(f"""apiVersion: v1
kind: Config
clusters:
  - name: standin
    cluster: {{server: "{k8s.url}"}}
  - name: other
    cluster: {{server: "http://127.0.0.1:{free_port()}"}}
users:
  - name: vigil
    user: {{token: "{TOKEN}"}}
contexts:
  - name: standin
    context: {{cluster: standin, user: vigil}}
  - name: other
    context: {{cluster: other, user: vigil}}
current-context: other
""")
    c = build("kc", "kubernetes", {"kubeconfig": str(kc), "context": "standin", "timeout_s": 5})
    assert c.check().endswith("reading all namespaces")
    topo = c.topology()
    kinds = {r.name: r.kind for r in topo.resources}
    assert kinds["coredns"] == "service" and ("kube-dns", "coredns") in {(e.src, e.dst) for e in topo.edges}
    assert "/api/v1/pods" in {p for p, _ in k8s.requests}
    assert "DNSConfigForming" in " ".join(c.logs(START, END).body)
    with pytest.raises(SourceError, match="^cannot reach Kubernetes at http://127.0.0.1:"):
        build("kc2", "kubernetes", {"kubeconfig": str(kc), "timeout_s": 2}).check()     # current-context: other
    with pytest.raises(SourceError, match="cannot load the Kubernetes client configuration"):
        build("kc3", "kubernetes", {"kubeconfig": str(kc), "context": "nope"}).check()


def test_a_wrong_token_is_a_one_line_error_without_the_token(k8s, monkeypatch):
    monkeypatch.setenv("K8S_TOKEN", "wrong-token-value")
    c = build("k8s", "kubernetes", {"api_url": k8s.url, "token": {"env": "K8S_TOKEN"}})
    with pytest.raises(SourceError) as ei:
        c.topology()
    msg = str(ei.value)
    assert msg == f"Kubernetes at {k8s.url} refused pods: HTTP 401: Unauthorized (check the token and RBAC)"
    assert "wrong-token" not in msg


def test_down_and_slow_api_servers(cluster):
    c = build("down", "kubernetes", {"api_url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1})
    for call in (c.check, lambda: c.changes(START, END), lambda: c.logs(START, END), c.topology):
        with pytest.raises(SourceError, match=r"^cannot reach Kubernetes at http://127.0.0.1:\d+$"):
            call()
    with K8sStandIn(cluster, delay_s=3) as slow:
        c = build("slow", "kubernetes", {"api_url": slow.url, "timeout_s": 0.5})
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"did not answer the version within 0.5 s"):
            c.check()
        assert time.monotonic() - t0 < 2.9


def test_config_is_validated():
    with pytest.raises(InputError, match="not both"):
        validate_config("kubernetes", {"api_url": "http://127.0.0.1:6443", "kubeconfig": "/x"})
    with pytest.raises(InputError, match="link-local"):
        validate_config("kubernetes", {"api_url": "http://169.254.169.254"})
    with pytest.raises(InputError, match="token goes with api_url"):
        validate_config("kubernetes", {"token": {"env": "X"}})
    with pytest.raises(InputError, match="not a namespace name"):
        validate_config("kubernetes", {"api_url": "http://127.0.0.1:6443", "namespaces": ["Bad_NS"]})
    c = build("k", "kubernetes", {"api_url": "https://10.0.0.1:6443"})
    assert c.roles == {"changes", "logs", "topology"} and c.config.service_label == "app.kubernetes.io/name"
