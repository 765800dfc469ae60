"""What a connector does with the answer of whatever its URL points at (a space admin can point a source at
any service on the Vigil host's networks, so the answer is untrusted twice over):

- a failed check says what failed (status, timeout, "not a ... API answer", a vendor error code when it is
  one identifier) and never repeats the answer's text: the 422 of ``PUT .../sources/NAME`` used to carry up
  to 200 characters of any loopback or private service's answer;
- every answer is read at most to the limit, counted as it arrives: a backend answering far more costs the
  limit, not the whole body in memory before a size check (a 200 MiB answer used to be read whole).

One loopback HTTP server plays the service, for every HTTP connector kind (httpx, httpx2, urllib3 and
botocore based)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vigil.sources import registry, safety

SECRET = "TOP SECRET of the internal service: 4242-xyzzy"
KINDS = ["prometheus", "loki", "tempo", "jaeger", "argocd", "opensearch", "datadog", "kubernetes", "cloudwatch",
         "mcp"]


class Service:
    """Answers every request with ``status`` and a body made of ``SECRET`` in every field a vendor error
    might use (or, in flood mode, ``flood_bytes`` of filler without a declared length)."""

    def __init__(self) -> None:
        self.status, self.flood_bytes, self.sent = 400, 0, 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"      # the body ends when the connection closes: no declared length

            def _answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                self.send_response(outer.status)
                if outer.flood_bytes:
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    chunk = b"[" + b"1," * 32767 + b"1]"
                    try:
                        while outer.sent < outer.flood_bytes:
                            self.wfile.write(chunk)
                            with outer.lock:
                                outer.sent += len(chunk)
                    except OSError:
                        pass                  # the client stopped reading and closed
                    return
                err = {"message": SECRET, "msg": SECRET, "reason": SECRET, "type": SECRET, "code": SECRET}
                body = json.dumps({"status": "error", "errorType": SECRET, "error": {**err, "root_cause": [err]},
                                   "errors": [SECRET, err], "kind": "Status", **err,
                                   "Error": {"Code": SECRET, "Message": SECRET}, "__type": SECRET}).encode()
                if self.path.endswith("/ready"):
                    body = SECRET.encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer  # noqa: N815

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def service():
    s = Service()
    yield s
    s.httpd.shutdown()


@pytest.fixture
def keys(monkeypatch):
    for name in ("DD_API", "DD_APP", "AWS_KEY", "AWS_SECRET"):
        monkeypatch.setenv(f"VIGIL_SECRET_{name}", "k" * 20)


def config(kind: str, base: str) -> dict:
    if kind == "datadog":
        return {"url": base, "api_key": {"env": "VIGIL_SECRET_DD_API"}, "app_key": {"env": "VIGIL_SECRET_DD_APP"},
                "timeout_s": 5}
    if kind == "kubernetes":
        return {"api_url": base, "timeout_s": 5}
    if kind == "cloudwatch":
        return {"region": "eu-west-1", "endpoint_url": base, "access_key_id": {"env": "VIGIL_SECRET_AWS_KEY"},
                "secret_access_key": {"env": "VIGIL_SECRET_AWS_SECRET"}, "max_attempts": 1, "timeout_s": 5}
    if kind == "mcp":
        return {"transport": "http", "url": base + "/mcp", "timeout_s": 5}
    return {"url": base, "timeout_s": 5}


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 500])
@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_check_never_repeats_the_answer(kind, status, service, keys):
    service.status, service.flood_bytes = status, 0
    result = registry.check("probe", kind, registry.normalize(kind, config(kind, service.base)))
    assert not result.ok or status == 200, result.message
    assert "SECRET" not in result.message and "4242" not in result.message and "xyzzy" not in result.message, \
        result.message
    assert "\n" not in result.message and result.message


def test_the_api_answer_of_a_failed_check_holds_no_answer_text(service, tmp_path, keys):
    """The route the probe used: PUT a source at a private service, read the 422."""
    from e2e.kit import settings_for
    from fastapi.testclient import TestClient

    from vigil.api import create_app
    from vigil.app import App
    from vigil.model import AgentSpace, Role
    from vigil.server.runtime import Runtime
    from vigil.server.settings import ServerSettings
    rt = Runtime(App(settings_for(tmp_path)), ServerSettings())
    rt.state.put_space(AgentSpace(id="probe", name="probe"))
    admin = rt.state.create_token("probe", Role.ADMIN, name="t")[0]
    service.status, service.flood_bytes = 401, 0
    with TestClient(create_app(rt, start=False)) as c:
        for kind in ("loki", "tempo", "argocd", "opensearch", "datadog", "cloudwatch"):
            r = c.put(f"/v1/spaces/probe/sources/{kind}", json={"kind": kind, "config": config(kind, service.base)},
                      headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 422 and "failed its check" in r.json()["error"], r.text
            assert "SECRET" not in r.text and "4242" not in r.text, r.text


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_over_the_limit_is_not_read_whole(kind, service, keys, monkeypatch):
    """The limit (64 MiB) is lowered to 1 MiB here; the service has 48 MiB to send. What it managed to send
    before the connector gave up is the limit plus what the loopback socket buffers hold, never the lot."""
    monkeypatch.setattr(safety, "MAX_RESPONSE_BYTES", 1 << 20)
    service.status, service.flood_bytes, service.sent = 200, 48 << 20, 0
    try:
        result = registry.check("flood", kind, registry.normalize(kind, config(kind, service.base)))
        sent = service.sent
    finally:
        service.flood_bytes = 0
    assert not result.ok
    assert sent < 24 << 20, f"{kind} read {sent} bytes of an answer over the limit: {result.message}"
    if kind != "mcp":            # the MCP SDK reports its own transport failure
        assert "larger than 1048576 bytes" in result.message or "more than 1048576 bytes" in result.message, \
            result.message


def test_declared_length_over_the_limit_is_refused_unread(monkeypatch):
    """An answer whose Content-Length already says it is too large is not read at all."""
    import httpx

    monkeypatch.setattr(safety, "MAX_RESPONSE_BYTES", 1000)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(10 << 30)}, stream=httpx.ByteStream(b""))

    inner = httpx.MockTransport(handler)
    capped = safety._capped_transport(httpx, inner, safety.MAX_RESPONSE_BYTES, False)
    with httpx.Client(transport=capped) as c, pytest.raises(httpx.ReadError, match="larger than 1000 bytes"):
        c.get("http://backend.test/")
