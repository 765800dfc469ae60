"""Local stand-ins for the hosted services Vigil's respond slice talks to (none can run here). Each
answers the methods Vigil uses exactly as the vendor's reference documents them:

- Slack Web API (https://api.slack.com/methods): POST form or JSON bodies with ``Authorization: Bearer
  xoxb-...``; every answer HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``
  (``invalid_auth``, ``channel_not_found``, ``name_taken``); rate limits HTTP 429 with ``Retry-After``.
  ``chat.postMessage`` -> ``{"ok", "channel", "ts", "message"}`` (https://api.slack.com/methods/chat.postMessage),
  ``conversations.create`` -> ``{"ok", "channel": {"id", "name", "is_channel", ...}}``,
  ``conversations.invite`` -> ``{"ok", "channel"}``, ``views.open`` -> ``{"ok", "view": {"id", ...}}``.
- PagerDuty REST API v2, "Create a note on an incident" (https://developer.pagerduty.com/api-reference/
  3df2b685a0dbc-create-a-note-on-an-incident): ``POST /incidents/{id}/notes``, ``Authorization: Token
  token=...``, ``From`` header required; 201 ``{"note": {"id", "user", "content", "created_at"}}``;
  404 ``{"error": {"message": "Not Found", "code": 2100}}``.
- ServiceNow Table API (https://developer.servicenow.com/dev.do#!/reference/api/latest/rest/c_TableAPI):
  ``POST /api/now/table/incident`` -> 201 ``{"result": {"sys_id", "number", ...}}``; ``PATCH
  /api/now/table/incident/{sys_id}`` -> 200 ``{"result": {...}}``; basic auth; 401 ``{"error":
  {"message": "User Not Authenticated", "detail": "..."}, "status": "failure"}``.
- Jira Cloud REST v3 (https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/):
  ``POST /rest/api/3/issue`` -> 201 ``{"id", "key", "self"}``; ``POST /rest/api/3/issue/{key}/comment``
  -> 201 ``{"id", "self", "body", "author", "created"}``; ADF bodies required (``type: doc``).
- GitHub REST (https://docs.github.com/en/rest/issues/issues#create-an-issue and
  .../issues/comments#create-an-issue-comment): ``POST /repos/{o}/{r}/issues`` -> 201 ``{"id", "number",
  "html_url", "title", "body", "state": "open"}``; ``POST /repos/{o}/{r}/issues/{n}/comments`` -> 201
  ``{"id", "html_url", "body"}``; 401 ``{"message": "Bad credentials", "documentation_url": ...}``.
- OpenAI chat completions (https://platform.openai.com/docs/api-reference/chat/create): ``POST
  /v1/chat/completions`` -> ``{"id", "object": "chat.completion", "created", "model", "choices": [{"index",
  "message": {"role": "assistant", "content"}, "finish_reason": "stop"}], "usage"}``.
- Argo CD API (``POST /api/v1/applications/{name}/rollback`` with an ApplicationRollbackRequest ->
  the Application), as in Argo CD's swagger (argo-cd/assets/swagger.json).
- A deployer that verifies Vigil's signed webhook and answers ``{"accepted": true}``.

``down`` makes every answer HTTP 503 (a receiver outage); ``requests`` records what arrived."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SLACK_TOKEN = "xoxb-test-0123456789-abcdefABCDEF"
PD_TOKEN = "pd-test-token-0123456789"
SNOW_USER, SNOW_PASS = "vigil", "snow-pass-0123456789"
JIRA_EMAIL, JIRA_TOKEN = "vigil@example.com", "jira-token-0123456789"
GH_TOKEN = "ghp_test0123456789abcdefghijklmnopqrstu"
OPENAI_KEY = "sk-test-0123456789abcdefghij"
ARGO_TOKEN = "argocd-token-0123456789"


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def params(self) -> dict[str, Any]:
        """Slack method arguments: JSON or form."""
        if self.headers.get("content-type", "").startswith("application/json"):
            return self.json()
        return self.form()


class StandIn:
    def __init__(self, deployer_secret: str = "", on_deploy: Callable[[dict], None] | None = None,
                 chat_reply: Callable[[dict], str] | None = None) -> None:
        self.requests: list[Req] = []
        self.down = False
        self.deployer_secret = deployer_secret
        self.on_deploy = on_deploy
        self.chat_reply = chat_reply or (lambda _body: "The journal shows the deploy [J1].")
        self._ts = itertools.count(1)
        self.channels: dict[str, str] = {}
        self.posted: list[dict] = []          # chat.postMessage answers (channel, ts, thread_ts), in order
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                req = Req(self.command, urlsplit(self.path).path, {k.lower(): v for k, v in self.headers.items()},
                          self.rfile.read(n) if n else b"")
                outer.requests.append(req)
                if outer.down:
                    return self._send(503, {"error": "service unavailable"})
                code, body = outer.route(req)
                self._send(code, body)

            do_POST = do_PATCH = do_PUT = do_GET = _handle  # noqa: N815

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *_a: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, prefix: str) -> list[Req]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    # -- routing ------------------------------------------------------------------------------------
    def route(self, r: Req) -> tuple[int, Any]:
        if r.path.startswith("/slack/api/"):
            return self.slack(r, r.path.removeprefix("/slack/api/"))
        if r.path.startswith("/pd/"):
            return self.pagerduty(r, r.path.removeprefix("/pd"))
        if r.path.startswith("/snow/"):
            return self.servicenow(r, r.path.removeprefix("/snow"))
        if r.path.startswith("/jira/"):
            return self.jira(r, r.path.removeprefix("/jira"))
        if r.path.startswith("/gh/"):
            return self.github(r, r.path.removeprefix("/gh"))
        if r.path == "/openai/v1/chat/completions":
            return self.openai(r)
        if r.path.startswith("/argocd/api/v1/applications/") and r.path.endswith("/rollback"):
            return self.argocd(r)
        if r.path == "/deployer":
            return self.deployer(r)
        return 404, {"error": "not found"}

    def slack(self, r: Req, method: str) -> tuple[int, Any]:
        if r.headers.get("authorization") != f"Bearer {SLACK_TOKEN}":
            return 200, {"ok": False, "error": "invalid_auth"}
        p = r.params()
        if method == "chat.postMessage":
            chan = p.get("channel")
            if not chan or not (chan.startswith(("C", "G"))):
                return 200, {"ok": False, "error": "channel_not_found"}
            if not p.get("text") and not p.get("blocks"):
                return 200, {"ok": False, "error": "no_text"}
            ts = f"{1700000000 + next(self._ts)}.{next(self._ts):06d}"
            blocks = p.get("blocks")
            blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
            msg = {"type": "message", "subtype": "bot_message", "text": p.get("text", ""), "ts": ts,
                   "bot_id": "B0VIGIL", "blocks": blocks or []}
            if p.get("thread_ts"):
                msg["thread_ts"] = p["thread_ts"]
            self.posted.append({"channel": chan, "ts": ts, "thread_ts": p.get("thread_ts"), "text": p.get("text", "")})
            return 200, {"ok": True, "channel": chan, "ts": ts, "message": msg}
        if method == "conversations.create":
            name = str(p.get("name", ""))
            if name in self.channels.values():
                return 200, {"ok": False, "error": "name_taken"}
            cid = f"C{len(self.channels) + 100:08d}"
            self.channels[cid] = name
            return 200, {"ok": True, "channel": {"id": cid, "name": name, "is_channel": True, "is_group": False,
                                                 "is_im": False, "created": int(time.time()), "creator": "U0VIGIL",
                                                 "is_archived": False, "is_general": False, "is_private": False}}
        if method == "conversations.invite":
            return 200, {"ok": True, "channel": {"id": p.get("channel"), "name": self.channels.get(p.get("channel"))}}
        if method == "views.open":
            if not p.get("trigger_id"):
                return 200, {"ok": False, "error": "invalid_trigger_id"}
            view = p.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            return 200, {"ok": True, "view": {"id": "V0123", "type": view.get("type"), "callback_id":
                                              view.get("callback_id"), "private_metadata": view.get("private_metadata")}}
        return 200, {"ok": False, "error": "unknown_method"}

    def pagerduty(self, r: Req, path: str) -> tuple[int, Any]:
        if r.headers.get("authorization") != f"Token token={PD_TOKEN}":
            return 401, {"error": {"message": "Unauthorized", "code": 2006}}
        if not r.headers.get("from"):
            return 400, {"error": {"message": "Invalid Input Provided", "code": 2001,
                                   "errors": ["From header is required"]}}
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "incidents" and parts[2] == "notes" and r.method == "POST":
            content = r.json().get("note", {}).get("content")
            if not content:
                return 400, {"error": {"message": "Invalid Input Provided", "code": 2001}}
            return 201, {"note": {"id": f"PWL{next(self._ts):04d}", "user": {"id": "PXPGF42", "type": "user_reference",
                                                                            "summary": "Vigil"},
                                  "channel": {"summary": "The PagerDuty website or APIs"}, "content": content,
                                  "created_at": "2026-12-04T12:00:00-00:00"}}
        return 404, {"error": {"message": "Not Found", "code": 2100}}

    def servicenow(self, r: Req, path: str) -> tuple[int, Any]:
        want = "Basic " + base64.b64encode(f"{SNOW_USER}:{SNOW_PASS}".encode()).decode()
        if r.headers.get("authorization") != want:
            return 401, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth "
                                                                                  "information"}, "status": "failure"}
        if path == "/api/now/table/incident" and r.method == "POST":
            n = next(self._ts)
            return 201, {"result": {"sys_id": f"{n:032x}", "number": f"INC{n:07d}", **r.json()}}
        if path.startswith("/api/now/table/incident/") and r.method == "PATCH":
            return 200, {"result": {"sys_id": path.rsplit("/", 1)[1], "number": "INC0000001",
                                    "work_notes": ""}}      # journal fields read back empty, as ServiceNow does
        return 404, {"error": {"message": "No Record found", "detail": ""}, "status": "failure"}

    def jira(self, r: Req, path: str) -> tuple[int, Any]:
        want = "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{JIRA_TOKEN}".encode()).decode()
        if r.headers.get("authorization") != want:
            return 401, {"errorMessages": ["You are not authenticated."], "errors": {}}
        if path == "/rest/api/3/issue" and r.method == "POST":
            f = r.json().get("fields", {})
            if f.get("description", {}).get("type") != "doc":
                return 400, {"errorMessages": [], "errors": {"description": "Operation value must be an Atlassian "
                                                                            "Document"}}
            n = next(self._ts)
            return 201, {"id": str(10000 + n), "key": f"{f['project']['key']}-{n}",
                         "self": f"{self.url}/jira/rest/api/3/issue/{10000 + n}"}
        if path.startswith("/rest/api/3/issue/") and path.endswith("/comment") and r.method == "POST":
            body = r.json().get("body", {})
            if body.get("type") != "doc":
                return 400, {"errorMessages": ["Comment body must be an Atlassian Document"], "errors": {}}
            return 201, {"id": str(next(self._ts)), "self": "", "body": body, "created": "2026-12-04T12:00:00.000+0000",
                         "author": {"displayName": "Vigil"}}
        return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}

    def github(self, r: Req, path: str) -> tuple[int, Any]:
        if r.headers.get("authorization") != f"Bearer {GH_TOKEN}":
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "repos" and parts[3] == "issues" and r.method == "POST":
            b = r.json()
            n = next(self._ts)
            return 201, {"id": 1000 + n, "number": n, "title": b["title"], "body": b.get("body"), "state": "open",
                         "html_url": f"https://github.com/{parts[1]}/{parts[2]}/issues/{n}"}
        if len(parts) == 6 and parts[3] == "issues" and parts[5] == "comments" and r.method == "POST":
            n = next(self._ts)
            return 201, {"id": 5000 + n, "body": r.json()["body"],
                         "html_url": f"https://github.com/{parts[1]}/{parts[2]}/issues/{parts[4]}#issuecomment-{n}"}
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    def openai(self, r: Req) -> tuple[int, Any]:
        if r.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}}
        body = r.json()
        text = self.chat_reply(body)
        return 200, {"id": f"chatcmpl-{next(self._ts)}", "object": "chat.completion", "created": int(time.time()),
                     "model": body.get("model"), "system_fingerprint": "fp_test",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                                  "logprobs": None, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}

    def argocd(self, r: Req) -> tuple[int, Any]:
        if r.headers.get("authorization") != f"Bearer {ARGO_TOKEN}":
            return 401, {"error": "invalid session", "code": 16, "message": "invalid session"}
        b = r.json()
        name = r.path.split("/")[-2]
        return 200, {"metadata": {"name": name, "namespace": "argocd"},
                     "status": {"operationState": {"phase": "Running", "operation": {"rollback": {"id": b.get("id")}}}}}

    def deployer(self, r: Req) -> tuple[int, Any]:
        ts, sig = r.headers.get("x-vigil-timestamp", ""), r.headers.get("x-vigil-signature", "")
        want = "sha256=" + hmac.new(self.deployer_secret.encode(), ts.encode() + b"." + r.body, hashlib.sha256).hexdigest()
        if not ts or not hmac.compare_digest(sig, want) or abs(time.time() - int(ts)) > 300:
            return 401, {"error": "bad signature"}
        body = r.json()
        if self.on_deploy:
            self.on_deploy(body)
        return 200, {"accepted": True, "operation": body["operation"], "service": body["service"]}


def slack_sign(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature (https://api.slack.com/authentication/verifying-requests-from-slack)."""
    t = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), b"v0:" + t.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": t, "X-Slack-Signature": f"v0={mac}", "Content-Type":
            "application/x-www-form-urlencoded"}
