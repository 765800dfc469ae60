"""The Argo CD change source against a local stand-in for the Argo CD API server (a hosted or
in-cluster service that cannot run here). ``GET /api/v1/applications`` answers a
``v1alpha1ApplicationList`` shaped as the Argo CD API reference documents it (the v2 server swagger,
``v1alpha1Application`` with ``status.history[]`` = ``v1alpha1RevisionHistory`` {id, revision,
deployedAt, deployStartedAt, source, initiatedBy} and ``status.operationState`` =
``v1alpha1OperationState`` {operation, phase, message, syncResult, startedAt, finishedAt}); the
stand-in requires the bearer token and honours ``projects`` and ``selector`` as the real server does."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from vigil.sources import registry
from vigil.sources.connector import SourceError, build

TOKEN = "argocd-api-token-abcdef0123456789"


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def app(name: str, project: str, labels: dict, history: list, op: dict | None) -> dict:
    status = {
        "sync": {"status": "Synced", "revision": history[-1]["revision"] if history else "",
                 "comparedTo": {"source": {"repoURL": "https://github.com/acme/deploy.git", "path": name,
                                           "targetRevision": "HEAD"},
                                "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"}}},
        "health": {"status": "Healthy"},
        "history": history,
        "reconciledAt": "2024-05-01T12:30:00Z",
        "sourceType": "Kustomize",
        "summary": {"images": [f"registry.example.com/{name}:1.2.0"]},
        "resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop", "name": name,
                       "status": "Synced", "health": {"status": "Healthy"}}],
    }
    if op is not None:
        status["operationState"] = op
    return {"metadata": {"name": name, "namespace": "argocd", "uid": f"uid-{name}", "labels": labels,
                         "resourceVersion": "12345", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"project": project,
                     "source": {"repoURL": "https://github.com/acme/deploy.git", "path": name,
                                "targetRevision": "HEAD"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
            "status": status}


def hist(hid: int, rev: str, at: str, who: dict | None = None, path: str = "cart") -> dict:
    return {"id": hid, "revision": rev, "deployStartedAt": at.replace(":00Z", ":00Z"), "deployedAt": at,
            "source": {"repoURL": "https://github.com/acme/deploy.git", "path": path, "targetRevision": "HEAD"},
            **({"initiatedBy": who} if who else {})}


def op(phase: str, rev: str, started: str, finished: str | None, message: str, who: dict) -> dict:
    out = {"operation": {"sync": {"revision": rev, "syncStrategy": {"hook": {}}}, "initiatedBy": who,
                         "retry": {}},
           "phase": phase, "message": message, "startedAt": started,
           "syncResult": {"resources": [], "revision": rev,
                          "source": {"repoURL": "https://github.com/acme/deploy.git", "targetRevision": "HEAD"}}}
    if finished:
        out["finishedAt"] = finished
    return out


APPS = [
    app("cart-prod", "shop", {"team": "shop"},
        [hist(1, "1111111111aaaaaaaaaa", "2024-05-01T10:00:00Z", {"automated": True}),
         hist(2, "2222222222bbbbbbbbbb", "2024-05-01T12:00:00Z", {"username": "alice"})],
        # the last operation succeeded: it is history entry 2, not another change
        op("Succeeded", "2222222222bbbbbbbbbb", "2024-05-01T11:59:40Z", "2024-05-01T12:00:00Z",
           "successfully synced (all tasks run)", {"username": "alice"})),
    app("payment", "shop", {"team": "shop"},
        [hist(7, "7777777777cccccccccc", "2024-05-01T09:00:00Z", {"automated": True}, "payment")],
        op("Failed", "8888888888dddddddddd", "2024-05-01T12:10:00Z", "2024-05-01T12:11:30Z",
           "one or more objects failed to apply, reason: Deployment.apps \"payment\" is invalid", {"automated": True})),
    app("search", "shop", {"team": "search"}, [],
        op("Running", "9999999999eeeeeeeeee", "2024-05-01T12:20:00Z", None, "waiting for healthy state",
           {"username": "bob"})),
    app("billing", "finance", {"team": "finance"},
        [hist(3, "3333333333ffffffffff", "2024-05-01T12:05:00Z", None, "billing")], None),
]


class ArgoStandIn:
    def __init__(self) -> None:
        self.queries: list[dict] = []
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                if url.path != "/api/v1/applications":
                    return self._send(404, {"error": "Not Found", "code": 5, "message": "Not Found"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "invalid session: token signature is invalid", "code": 16,
                                            "message": "invalid session: token signature is invalid"})
                time.sleep(outer.delay)
                q = parse_qs(url.query)
                outer.queries.append(q)
                items = [a for a in APPS if not q.get("projects") or a["spec"]["project"] in q["projects"]]
                for sel in q.get("selector", []):
                    k, _, v = sel.partition("=")
                    items = [a for a in items if a["metadata"]["labels"].get(k) == v]
                self._send(200, {"metadata": {"resourceVersion": "12345"}, "items": items})

            def _send(self, code, body):
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *_a: None     # the timeout test hangs up on purpose
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def argo():
    s = ArgoStandIn()
    yield s
    s.close()


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_ARGOCD_TOKEN", TOKEN)
    return {"env": "VIGIL_TEST_ARGOCD_TOKEN"}


def test_syncs_become_deploy_changes(argo, token_env):
    conn = build("argo", "argocd", {"url": argo.url, "token": token_env, "services": {"cart-prod": "cart"}})
    df = conn.changes(ts("2024-05-01T09:30:00Z"), ts("2024-05-01T13:00:00Z"))
    got = [(r.resource, r.ts, r.kind, r.author) for r in df.itertuples()]
    assert got == [
        ("cart", ts("2024-05-01T10:00:00Z"), "deploy", "automated"),
        ("cart", ts("2024-05-01T12:00:00Z"), "deploy", "alice"),       # the succeeded operation is not repeated
        ("billing", ts("2024-05-01T12:05:00Z"), "deploy", ""),
        ("payment", ts("2024-05-01T12:11:30Z"), "deploy", "automated"),   # a failed sync, not in the history
        ("search", ts("2024-05-01T12:20:00Z"), "deploy", "bob"),          # still running: at its start
    ]
    desc = dict(zip(df["resource"] + df["ts"].astype(str), df["description"], strict=True))
    assert desc["cart" + str(ts("2024-05-01T12:00:00Z"))] == (
        "Argo CD synced cart-prod to 2222222222bb (history 2) from https://github.com/acme/deploy.git/cart")
    assert desc["payment" + str(ts("2024-05-01T12:11:30Z"))].startswith(
        "Argo CD sync of payment to 8888888888dd failed: one or more objects failed to apply")
    conn.close()


def test_projects_and_selector_narrow_the_applications(argo, token_env):
    conn = build("argo", "argocd", {"url": argo.url, "token": token_env, "projects": ["shop"],
                                    "selector": "team=shop"})
    df = conn.changes(ts("2024-05-01T00:00:00Z"), ts("2024-05-02T00:00:00Z"))
    assert sorted(set(df["resource"])) == ["cart-prod", "payment"]
    assert argo.queries[-1] == {"projects": ["shop"], "selector": ["team=shop"]}
    assert conn.check() == f"Argo CD at {argo.url.removeprefix('http://')} answered: 2 application(s) " \
                           "(cart-prod, payment)"
    conn.close()


def test_failures_are_one_line_source_errors(argo, token_env, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_ARGOCD_BAD", "not-the-token")
    bad = build("argo", "argocd", {"url": argo.url, "token": {"env": "VIGIL_TEST_ARGOCD_BAD"}})
    # what failed, never the answer's text (the URL may point at any service on the host's networks)
    with pytest.raises(SourceError, match=r"answered HTTP 401 on /api/v1/applications \(not authorized: check the "
                                          r"credentials\)$"):
        bad.check()
    res = registry.check("argo", "argocd", {"url": argo.url, "token": {"env": "VIGIL_TEST_ARGOCD_UNSET"}})
    assert not res.ok and res.message == ("argocd source 'argo' cannot be built: the environment variable "
                                          "VIGIL_TEST_ARGOCD_UNSET is not set")
    argo.delay = 1.5
    try:
        slow = build("argo", "argocd", {"url": argo.url, "token": token_env, "timeout_s": 0.5})
        with pytest.raises(SourceError, match="did not answer /api/v1/applications within 0.5 s"):
            slow.changes(0, 1)
    finally:
        argo.delay = 0.0
    res = registry.check("argo", "argocd", {"url": "http://127.0.0.1:9", "token": token_env, "timeout_s": 2})
    assert not res.ok and "cannot reach Argo CD at 127.0.0.1:9" in res.message and "\n" not in res.message
