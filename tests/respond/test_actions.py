"""Directed actions: off by default, approved by a person with a single-use token bound to the action and
its exact arguments, run once (a replay is refused, also across two processes sharing PostgreSQL), and
journaled and audited. Each kind runs against the most real counterpart: a real git repository, the
Kubernetes API stand-in of the connector tests (PATCH per the API reference), an Argo CD stand-in and a
deployer that verifies the webhook signature."""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sources.k8s_standin import K8sStandIn, build_cluster
from sqlalchemy import update

from respond.kit import concluded, setup
from respond.standins import ARGO_TOKEN, StandIn
from vigil.errors import InputError
from vigil.respond.service import Forbidden
from vigil.store.respond import Refused
from vigil.store.state import StateStore
from vigil.store.tables import ApprovalRow

SECRET_ENV = "VIGIL_SECRET_TEST_DEPLOYER"
DEPLOYER_SECRET = "deployer-secret-0123456789abcdef"


@pytest.fixture
def deployer(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, DEPLOYER_SECRET)
    calls: list[dict] = []
    with StandIn(deployer_secret=DEPLOYER_SECRET, on_deploy=calls.append) as s:
        s.calls = calls
        yield s


def _webhook(svc, space, url):
    svc.set_action(space, "webhook", True, {"url": url, "secret": {"env": SECRET_ENV}, "allow_link_local": False}, "admin")


def test_actions_are_off_until_a_space_turns_them_on(database_url, deployer):
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    args = {"operation": "rollback", "service": "orders-api"}
    with pytest.raises(Forbidden, match="action 'webhook' is off in space 'shop'"):
        svc.propose("shop", inv, "webhook", args, "token:op")
    _webhook(svc, "shop", deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", args, "token:op")
    assert a["status"] == "proposed" and a["summary"] == "ask the deployer to rollback orders-api"
    # turned off again: the proposal cannot be approved nor run
    svc.set_action("shop", "webhook", False, {"url": deployer.url + "/deployer", "secret": {"env": SECRET_ENV}},
                   "admin")
    with pytest.raises(Forbidden):
        svc.approve("shop", a["id"], "token:op")
    assert deployer.calls == []


def test_an_approval_runs_its_action_once_and_is_journaled_and_audited(database_url, deployer):
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, "shop", deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api",
                                             "params": {"revision": "abc123"}}, "token:op")
    token, approved = svc.approve("shop", a["id"], "token:alice")
    assert approved["status"] == "approved" and token.startswith("vat_")
    with st.session() as s:      # only the token's hash is stored
        row = s.query(ApprovalRow).one()
        assert row.token_hash != token and token not in str(row.__dict__)
    with pytest.raises(Refused, match="already approved"):
        svc.approve("shop", a["id"], "token:bob")          # an approval is given once
    done = svc.run("shop", a["id"], token, "token:alice", verify_async=False)
    assert done["status"] == "succeeded" and "the deployer accepted" in done["result"]["message"]
    assert deployer.calls == [{"operation": "rollback", "service": "orders-api", "params": {"revision": "abc123"},
                               "space": "shop", "investigation": inv, "action": a["id"],
                               "approved_by": "token:alice"}]
    with pytest.raises(Refused, match="already used"):
        svc.run("shop", a["id"], token, "token:alice")
    assert len(deployer.calls) == 1
    journal = [e.message for e in st.journal(inv)]
    assert any(m.startswith("action proposed by token:op") for m in journal)
    assert any(m.startswith("action approved by token:alice") for m in journal)
    assert any(m.startswith("action succeeded: ask the deployer to rollback orders-api") for m in journal)
    audit = [(e["action"], e["actor"]) for e in st.audit_log("shop", 50)]
    for entry in [("action-propose", "token:op"), ("action-approve", "token:alice"), ("action-run", "token:alice"),
                  ("action-result", "token:alice")]:
        assert entry in audit


def test_tokens_are_bound_to_their_action_and_arguments_and_expire(database_url, deployer):
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, "shop", deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    b = svc.propose("shop", inv, "webhook", {"operation": "restart", "service": "orders-api"}, "op")
    ta, _ = svc.approve("shop", a["id"], "alice")
    tb, _ = svc.approve("shop", b["id"], "alice")
    with pytest.raises(Refused, match="another action"):
        svc.run("shop", b["id"], ta, "alice")            # a's token does not run b
    with pytest.raises(Refused, match="not valid"):
        svc.run("shop", a["id"], "vat_" + "x" * 40, "alice")
    # the stored arguments changed after the approval: the hash no longer matches the approval
    with st.session() as s, s.begin():
        from vigil.store.tables import ActionRow
        s.execute(update(ActionRow).where(ActionRow.id == a["id"]).values(
            args={"operation": "rollback", "service": "payments"}))
    with pytest.raises(InputError, match="do not match their approval"):
        svc.run("shop", a["id"], ta, "alice")
    # an expired token is refused
    with st.session() as s, s.begin():
        s.execute(update(ApprovalRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(Refused, match="expired"):
        svc.run("shop", b["id"], tb, "alice")
    assert deployer.calls == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_processes_on_one_postgresql_run_an_approval_once(database_url, deployer):
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, "shop", deployer.url + "/deployer")
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    token, _ = svc.approve("shop", a["id"], "alice")
    # a second "server process": its own engine and connection pool on the same database
    from vigil.respond.service import RespondService
    other = RespondService(StateStore(database_url), svc.sources)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def go(s):
        barrier.wait()
        try:
            s.run("shop", a["id"], token, "alice", verify_async=False)
            results.append("ran")
        except Refused:
            results.append("refused")
    threads = [threading.Thread(target=go, args=(svc if i % 2 else other,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["ran"] + ["refused"] * 7
    assert len(deployer.calls) == 1


# -- each kind against its counterpart ---------------------------------------------------------------
@pytest.fixture
def k8s(datasets):
    # the connector tests' cluster, modelled on Nezha's Online Boutique recording
    with K8sStandIn(build_cluster(datasets / "nezha" / "rca_data" / "2022-08-22" / "metric"),
                    token="k8s-token-0123456789") as k:
        yield k


def test_kubernetes_rollout_undo_patches_the_previous_template(database_url, k8s, monkeypatch):
    monkeypatch.setenv("VIGIL_SECRET_K8S", "k8s-token-0123456789")
    st, svc = setup(database_url)
    inv = concluded(st, "shop", resource="currencyservice")
    cluster = {"api_url": k8s.url, "token": {"env": "VIGIL_SECRET_K8S"}}
    svc.set_action("shop", "kubernetes-rollout-undo", True, {"cluster": cluster, "namespaces": ["default"]},
                   "admin", guard=False)
    with pytest.raises(InputError, match="namespace 'kube-system' is not one"):
        svc.propose("shop", inv, "kubernetes-rollout-undo", {"namespace": "kube-system", "deployment": "coredns"}, "op")
    with pytest.raises(InputError, match="deployment"):
        svc.propose("shop", inv, "kubernetes-rollout-undo", {"deployment": "currency; rm -rf /"}, "op")
    a = svc.propose("shop", inv, "kubernetes-rollout-undo", {"namespace": "default", "deployment": "currencyservice"},
                    "op")
    done = svc.approve_and_run("shop", a["id"], "alice", verify_async=False)
    assert done["status"] == "succeeded", done
    assert done["result"]["from_revision"] == 2 and done["result"]["to_revision"] == 1
    method, path, ctype, body = k8s.writes[-1]
    assert (method, path) == ("PATCH", "/apis/apps/v1/namespaces/default/deployments/currencyservice")
    assert ctype.startswith("application/json-patch+json")
    tpl = body[0]["value"]
    assert body[0]["op"] == "replace" and body[0]["path"] == "/spec/template"
    assert tpl["spec"]["containers"][0]["image"].endswith("currencyservice:v0.3.7")
    assert "pod-template-hash" not in tpl["metadata"]["labels"]
    dep = k8s._deployment("default", "currencyservice")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_kubernetes_scale_sets_the_replicas(database_url, k8s, monkeypatch):
    monkeypatch.setenv("VIGIL_SECRET_K8S", "k8s-token-0123456789")
    st, svc = setup(database_url)
    inv = concluded(st, "shop", resource="cartservice")
    svc.set_action("shop", "kubernetes-scale", True, {"cluster": {"api_url": k8s.url, "token": {"env": "VIGIL_SECRET_K8S"}}},
                   "admin", guard=False)
    a = svc.propose("shop", inv, "kubernetes-scale", {"deployment": "cartservice", "replicas": 3}, "op")
    done = svc.approve_and_run("shop", a["id"], "alice", verify_async=False)
    assert done["status"] == "succeeded" and done["result"]["from"] == 1 and done["result"]["to"] == 3
    assert k8s.writes[-1][1].endswith("/deployments/cartservice/scale") and k8s.writes[-1][3] == {"spec": {"replicas": 3}}
    assert k8s._deployment("default", "cartservice")["spec"]["replicas"] == 3


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=Ann", "-c", "user.email=ann@example.com", *args],
                   check=True, capture_output=True)


def test_git_revert_makes_a_branch_with_the_revert_and_pull_request_text(database_url, tmp_path):
    repo = tmp_path / "shop"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "orders.env").write_text("DATABASE_URL=postgres://db/orders\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "orders: config")
    (repo / "orders.env").write_text("DATABSE_URL=postgres://db/orders\n")
    _git(repo, "commit", "-qam", "orders: tidy the env")
    bad = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    st, svc = setup(database_url)
    inv = concluded(st, "shop", resource="orders")
    svc.set_action("shop", "git-revert", True, {"path": str(repo), "base": "main"}, "admin", guard=False)
    a = svc.propose("shop", inv, "git-revert", {"sha": bad, "branch": f"vigil/revert-{bad[:10]}"}, "op")
    done = svc.approve_and_run("shop", a["id"], "alice", verify_async=False)
    assert done["status"] == "succeeded", done
    branch = f"vigil/revert-{bad[:10]}"
    show = subprocess.run(["git", "-C", str(repo), "show", f"{branch}:orders.env"], capture_output=True, text=True)
    assert show.stdout == "DATABASE_URL=postgres://db/orders\n"
    assert (repo / "orders.env").read_text() == "DATABSE_URL=postgres://db/orders\n"   # the checkout is untouched
    pr = done["result"]["pull_request"]
    assert pr["title"] == 'Revert "orders: tidy the env"' and pr["head"] == branch and pr["base"] == "main"
    assert f"Reverts {bad}" in pr["body"] and "Approved by alice" in pr["body"] and inv in pr["body"]
    wt = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert wt.count("\n") == 1                          # the temporary worktree is gone


def test_argocd_rollback_posts_the_rollback_request(database_url, monkeypatch):
    monkeypatch.setenv("VIGIL_SECRET_ARGO", ARGO_TOKEN)
    with StandIn() as s:
        st, svc = setup(database_url)
        inv = concluded(st, "shop", resource="cart")
        svc.set_action("shop", "argocd-rollback", True, {"server": {"url": s.url + "/argocd", "token":
                                                                    {"env": "VIGIL_SECRET_ARGO"}}}, "admin")
        a = svc.propose("shop", inv, "argocd-rollback", {"app": "cart-prod", "id": 41}, "op")
        done = svc.approve_and_run("shop", a["id"], "alice", verify_async=False)
        assert done["status"] == "succeeded" and "operation Running" in done["result"]["message"]
        r = s.of("/argocd/")[-1]
        assert r.path == "/argocd/api/v1/applications/cart-prod/rollback" and r.method == "POST"
        assert r.json() == {"name": "cart-prod", "id": 41, "dryRun": False, "prune": False}


def test_a_failing_action_is_recorded_as_failed(database_url, deployer):
    st, svc = setup(database_url)
    inv = concluded(st, "shop")
    _webhook(svc, "shop", deployer.url + "/deployer")
    deployer.down = True
    a = svc.propose("shop", inv, "webhook", {"operation": "rollback", "service": "orders-api"}, "op")
    done = svc.approve_and_run("shop", a["id"], "alice", verify_async=False)
    assert done["status"] == "failed" and "answered HTTP 503" in done["error"]
    assert any(e.message.startswith("action failed") for e in st.journal(inv))


def test_a_space_admin_cannot_point_actions_at_the_hosts_secrets(database_url, monkeypatch, tmp_path):
    st, svc = setup(database_url)
    with pytest.raises(InputError, match="HOME"):
        svc.set_action("shop", "webhook", True, {"url": "http://127.0.0.1:9/x", "secret": {"env": "HOME"}}, "admin")
    with pytest.raises(InputError, match="VIGIL_SOURCE_DIRS"):
        svc.set_action("shop", "git-revert", True, {"path": str(tmp_path)}, "admin")
    with pytest.raises(InputError, match="link-local or cloud metadata"):
        svc.set_action("shop", "webhook", True, {"url": "http://169.254.169.254/latest", "secret": {"env": "VIGIL_SECRET_X"}},
                       "admin")
