"""Registering sources over the API, against a real server on loopback: configs are validated (bad ->
422, one line), backends are checked before anything is stored (a real git repository; an Argo CD
stand-in for the secret tests), the last check is kept and re-checked on demand, secrets never appear in
an answer, the audit log or the server's logs, and the topology endpoint merges the embedded store's
edges with a connector's, each with the source it was learned from."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from e2e.kit import live_server

from vigil.model import Edge, EdgeKind, EdgeSource, Resource, Role, Topology
from vigil.sources.connector import KINDS, Connector, ConnectorConfig

SECRET = "s3cr3t-argo-token-0123456789"


def git_repo(path: Path) -> Path:
    """A real repository with one commit."""
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2024-05-01T12:00:00Z", "GIT_COMMITTER_DATE": "2024-05-01T12:00:00Z",
           "GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "ann@example.com", "GIT_COMMITTER_NAME": "Ann",
           "GIT_COMMITTER_EMAIL": "ann@example.com"}
    (path / "README").write_text("shop\n")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(["git", *cmd], cwd=path, env=env, check=True)
    return path


class EchoingArgo:
    """An Argo CD stand-in (API v2.x, GET /api/v1/applications -> v1alpha1ApplicationList). With
    ``echo`` it refuses every token and, like a careless proxy, echoes the Authorization header in its
    error body: the secret must still not reach the API's answer."""

    def __init__(self) -> None:
        self.echo = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                auth = self.headers.get("Authorization", "")
                if outer.echo or auth != f"Bearer {SECRET}":
                    body = json.dumps({"error": f"invalid session: {auth}", "code": 16,
                                       "message": f"invalid session: {auth}"}).encode()
                    self.send_response(401)
                else:
                    body = json.dumps({"metadata": {"resourceVersion": "1"}, "items": [
                        {"metadata": {"name": "cart", "namespace": "argocd"}, "status": {}}]}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StaticTopology(Connector):
    """A connector that knows one edge, as a Kubernetes connector would."""

    kind: ClassVar[str] = "statictopo"
    Config = ConnectorConfig
    roles: ClassVar[frozenset[str]] = frozenset({"topology"})

    def check(self) -> str:
        return "static topology"

    def topology(self) -> Topology:
        return Topology(resources=[Resource(name="cart", attributes={"namespace": "shop"}),
                                   Resource(name="redis", kind="database")],
                        edges=[Edge(src="cart", dst="redis", kind=EdgeKind.DEPENDS_ON, source=EdgeSource.KUBERNETES),
                               Edge(src="frontend", dst="cart", source=EdgeSource.KUBERNETES)])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("srcapi"), workers=1) as lv:
        for space in ("shop", "other"):
            lv.space(space)
        lv.tokens = {r: lv.token("shop", r, r.value) for r in Role}
        lv.other_admin = lv.token("other", Role.ADMIN)
        yield lv


def _c(live, role=Role.ADMIN):
    return live.client(live.tokens[role])


def test_a_git_source_is_checked_stored_and_rechecked(live, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_SOURCE_DIRS", str(tmp_path))
    repo = git_repo(tmp_path / "deploy")
    with _c(live) as c:
        r = c.put("/v1/spaces/shop/sources/repo", json={"kind": "git", "config": {
            "path": str(repo), "services": {"services/cart/**": "cart"}}})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["kind"] == "git" and out["config"] == {"path": str(repo), "services": {"services/cart/**": "cart"}}
        assert out["check"].startswith(f"git repository {repo}: HEAD at ") and "initial" in out["check"]
        assert out["last_check"]["ok"] is True and out["last_check"]["message"] == out["check"]
        listed = {s["name"]: s for s in c.get("/v1/spaces/shop/sources").json()}
        assert listed["repo"]["last_check"]["ok"] is True and listed["embedded"]["last_check"] is None

    # an operator re-checks; the repository has gone: the check says so and is remembered
    shutil.rmtree(repo)
    with _c(live, Role.OPERATOR) as c:
        r = c.post("/v1/spaces/shop/sources/repo/check")
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is False and r.json()["message"] == f"git source 'repo': no such path {repo}"
        listed = {s["name"]: s for s in c.get("/v1/spaces/shop/sources").json()}
        assert listed["repo"]["last_check"] == {k: r.json()[k] for k in ("at", "ok", "message")}
        assert c.post("/v1/spaces/shop/sources/nosuch/check").status_code == 404
    git_repo(repo)
    with _c(live, Role.OPERATOR) as c:
        r = c.post("/v1/spaces/shop/sources/repo/check")
        assert r.json()["ok"] is True
    assert live.state.get_source("shop", "repo")["last_check"]["ok"] is True
    with live.client(live.other_admin) as c:          # another space's admin
        assert c.post("/v1/spaces/shop/sources/repo/check").status_code == 403


@pytest.mark.parametrize("body, expect", [
    ({"kind": "nosuchkind", "config": {}}, "unknown source kind 'nosuchkind'"),
    ({"kind": "git", "config": {}}, "bad git source config: path: Field required"),
    ({"kind": "git", "config": {"path": "/tmp", "colour": "red"}}, "bad git source config: colour: Extra inputs"),
    ({"kind": "git", "config": {"path": "/tmp", "branch": "--upload-pack=evil"}}, "branch must be a branch"),
    ({"kind": "argocd", "config": {"url": "http://169.254.169.254/", "token": {"env": "X"}}}, "link-local"),
    ({"kind": "argocd", "config": {"url": "http://127.0.0.1:1", "token": "plain-text-token-1234"}},
     "bad argocd source config: token"),
    ({"kind": "otlp", "config": {"resource_attribute": "bad attr!"}}, "bad otlp source config"),
])
def test_bad_configs_are_422_one_line_and_store_nothing(live, body, expect):
    with _c(live) as c:
        before = c.get("/v1/spaces/shop/sources").json()
        r = c.put("/v1/spaces/shop/sources/bad", json=body)
        assert r.status_code == 422, r.text
        assert set(r.json()) == {"error"} and "\n" not in r.json()["error"]
        assert expect in r.json()["error"], r.json()
        assert "plain-text-token-1234" not in r.text
        assert c.get("/v1/spaces/shop/sources").json() == before


def test_a_failed_check_stores_nothing_unless_checks_are_skipped(live, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_SOURCE_DIRS", str(tmp_path))
    missing = tmp_path / "not-there"
    with _c(live) as c:
        r = c.put("/v1/spaces/shop/sources/later", json={"kind": "git", "config": {"path": str(missing)}})
        assert r.status_code == 422
        assert r.json()["error"] == f"source 'later' failed its check, nothing stored: git source 'later': no such " \
                                    f"path {missing}"
        assert "later" not in {s["name"] for s in c.get("/v1/spaces/shop/sources").json()}
        r = c.put("/v1/spaces/shop/sources/later", params={"check": "false"},
                  json={"kind": "git", "config": {"path": str(missing)}})
        assert r.status_code == 200 and r.json()["last_check"] is None and r.json()["check"] is None
        assert c.delete("/v1/spaces/shop/sources/later").status_code == 204


def test_secrets_are_never_returned_audited_or_logged(live, monkeypatch, caplog):
    monkeypatch.setenv("VIGIL_SECRET_TEST_ARGO_TOKEN", SECRET)
    argo = EchoingArgo()
    caplog.set_level(logging.DEBUG)
    try:
        body = {"kind": "argocd", "config": {"url": argo.url, "token": {"env": "VIGIL_SECRET_TEST_ARGO_TOKEN"}}}
        texts = []
        with _c(live) as c:
            r = c.put("/v1/spaces/shop/sources/argo", json=body)
            texts.append(r.text)
            assert r.status_code == 422
            # the stand-in echoed "Bearer <secret>" in its error; the answer repeats none of its text
            assert "HTTP 401" in r.json()["error"] and "Bearer" not in r.json()["error"], r.json()
            argo.echo = False
            r = c.put("/v1/spaces/shop/sources/argo", json=body)
            texts.append(r.text)
            assert r.status_code == 200, r.text
            assert r.json()["config"]["token"] == {"env": "VIGIL_SECRET_TEST_ARGO_TOKEN"}
            assert "1 application(s) (cart)" in r.json()["check"]
            argo.echo = True
            r = c.post("/v1/spaces/shop/sources/argo/check")
            texts.append(r.text)
            assert r.json()["ok"] is False and "HTTP 401" in r.json()["message"]
            for path in ("/v1/spaces/shop/sources", "/v1/spaces/shop/audit?limit=1000", "/v1/spaces/shop/topology"):
                got = c.get(path)
                assert got.status_code == 200
                texts.append(got.text)
            assert c.delete("/v1/spaces/shop/sources/argo").status_code == 204
        texts.append(json.dumps(live.state.list_sources("shop"), default=str))
        texts += [rec.getMessage() for rec in caplog.records]
        assert all(SECRET not in t for t in texts)
        assert any("argo" in t for t in texts)          # (the texts are the real ones)
    finally:
        argo.close()


def test_topology_merges_the_store_and_connectors_with_their_sources(live, monkeypatch):
    monkeypatch.setitem(KINDS, "statictopo", f"{__name__}:StaticTopology")
    rt = live.runtime
    with rt.telemetry.transaction() as w:
        w.topology("shop", Topology(resources=[Resource(name="frontend"), Resource(name="cart")],
                                    edges=[Edge(src="frontend", dst="cart", source=EdgeSource.TRACES, weight=12.0)]))
    with _c(live) as c:
        assert c.put("/v1/spaces/shop/sources/k8s", json={"kind": "statictopo"}).status_code == 200
    try:
        with _c(live, Role.VIEWER) as c:
            r = c.get("/v1/spaces/shop/topology")
            assert r.status_code == 200, r.text
            topo = r.json()
            edges = {(e["src"], e["dst"], e["kind"], e["source"]) for e in topo["edges"]}
            assert edges == {("frontend", "cart", "calls", "traces"), ("frontend", "cart", "calls", "kubernetes"),
                             ("cart", "redis", "depends-on", "kubernetes")}
            res = {x["name"]: x for x in topo["resources"]}
            assert set(res) == {"frontend", "cart", "redis"} and res["cart"]["attributes"] == {"namespace": "shop"}
            assert res["redis"]["kind"] == "database"
        with live.client(live.other_admin) as c:
            assert c.get("/v1/spaces/shop/topology").status_code == 403
            assert c.get("/v1/spaces/other/topology").json() == {"resources": [], "edges": []}
    finally:
        with _c(live) as c:
            c.delete("/v1/spaces/shop/sources/k8s")


@pytest.mark.parametrize("body, expect", [
    ({"kind": "mcp", "config": {"transport": "stdio", "command": "/bin/sh", "args": ["-c", "id > /tmp/x"]}},
     "the stdio command '/bin/sh' is not one spaces may start"),
    ({"kind": "prometheus", "config": {"url": "http://127.0.0.1:1", "token": {"file": "/etc/hostname"}}},
     "secret file '/etc/hostname' is outside"),
    ({"kind": "prometheus", "config": {"url": "http://127.0.0.1:1", "token": {"env": "AWS_SECRET_ACCESS_KEY"}}},
     "secret environment variable 'AWS_SECRET_ACCESS_KEY' is not one a space may use"),
    ({"kind": "git", "config": {"path": "/etc"}}, "repository path '/etc' is outside"),
    ({"kind": "cloudwatch", "config": {"region": "us-east-1"}}, "the host's own AWS credentials"),
    ({"kind": "kubernetes", "config": {}}, "in-cluster credentials are the host's"),
    ({"kind": "kubernetes", "config": {"kubeconfig": "/root/.kube/config"}}, "kubeconfig '/root/.kube/config'"),
])
def test_a_space_admin_cannot_reach_the_vigil_host(live, tmp_path, body, expect):
    """Over the API a space's admin may not run programs on the Vigil host, read its files or send its
    environment to a backend; nothing runs, nothing is stored."""
    marker = tmp_path / "ran"
    if body["kind"] == "mcp":
        body["config"]["args"] = ["-c", f"touch {marker}"]
    with _c(live) as c:
        before = c.get("/v1/spaces/shop/sources").json()
        r = c.put("/v1/spaces/shop/sources/host", json=body)
        assert r.status_code == 422 and expect in r.json()["error"], r.text
        assert c.get("/v1/spaces/shop/sources").json() == before
    assert not marker.exists()


def test_the_hosts_operator_opens_exactly_what_spaces_may_use(live, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("VIGIL_MCP_COMMANDS", "/bin/true")
    with _c(live) as c:     # an allowed command passes the guard (and then fails its MCP handshake)
        r = c.put("/v1/spaces/shop/sources/tool", json={"kind": "mcp", "config": {
            "transport": "stdio", "command": "/bin/true", "timeout_s": 2}})
        assert r.status_code == 422 and "failed its check" in r.json()["error"], r.text
        r = c.put("/v1/spaces/shop/sources/tool", json={"kind": "mcp", "config": {
            "transport": "stdio", "command": "/bin/sh", "args": ["-c", f"touch {marker}"]}})
        assert r.status_code == 422 and "VIGIL_MCP_COMMANDS" in r.json()["error"]
    assert not marker.exists()
