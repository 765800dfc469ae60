"""Every HTML answer of the server (console pages, console error pages, the /v1 HTML report) carries the
security headers from one middleware: a Content-Security-Policy, X-Content-Type-Options, X-Frame-Options
and a Referrer-Policy; JSON answers carry nosniff too. /docs and /redoc, which load Swagger UI and ReDoc
from a CDN onto the server's origin, are off unless the operator turns them on; /openapi.json stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from e2e.kit import live_server

from vigil.api.middleware import CSP, REPORT_CSP
from vigil.model import Role, StartingPoint


def _secured(r, csp: str | None = None) -> None:
    h = r.headers
    assert h.get("x-content-type-options") == "nosniff", (r.request.url, dict(h))
    assert h.get("x-frame-options") == "DENY", (r.request.url, dict(h))
    assert h.get("referrer-policy") == "same-origin", (r.request.url, dict(h))
    if r.headers.get("content-type", "").startswith("text/html"):
        policy = h.get("content-security-policy") or ""
        assert "frame-ancestors 'none'" in policy and "object-src" in policy or "default-src 'none'" in policy, policy
        if csp is not None:
            assert policy == csp, (r.request.url, policy)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("headers"), workers=1) as lv:
        yield lv


def test_every_html_answer_has_the_security_headers(live):
    live.space("hdr")
    admin = live.token("hdr", Role.ADMIN)
    at = datetime.now(UTC) - timedelta(hours=1)
    inv = live.runtime.start_manual("hdr", StartingPoint.FREE_TEXT, at - timedelta(minutes=30), at, at, "x", "test")
    with live.client(admin) as c:
        # the /v1 HTML report: self-contained, so a policy that allows its inline style and nothing else
        r = c.get(f"/v1/spaces/hdr/investigations/{inv.id}/report", params={"format": "html"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        _secured(r, REPORT_CSP)
        for fmt in ("md", "json"):
            _secured(c.get(f"/v1/spaces/hdr/investigations/{inv.id}/report", params={"format": fmt}))
        # JSON answers and errors
        _secured(c.get("/v1/spaces/hdr"))
        _secured(c.get("/v1/spaces/hdr/investigations/inv_nope"))
        _secured(c.get("/healthz"))
    with live.client() as c:
        # console pages and console error pages
        r = c.get("/ui/login")
        assert r.status_code == 200
        _secured(r, CSP)
        r = c.get("/ui/static/nope.css")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        _secured(r, CSP)
        _secured(c.get("/ui/static/app.css"))
        _secured(c.get("/nothing-here"))


def test_api_docs_are_off_by_default_and_the_openapi_document_stays(live):
    with live.client() as c:
        assert c.get("/docs").status_code == 404
        assert c.get("/redoc").status_code == 404
        r = c.get("/openapi.json")
        assert r.status_code == 200 and r.json()["info"]["title"] == "Vigil"


def test_api_docs_when_turned_on_have_a_policy_that_allows_only_their_cdn(tmp_path):
    import base64
    import hashlib
    import re

    with live_server(tmp_path, workers=1, api_docs=True) as lv, lv.client() as c:
        for path in ("/docs", "/redoc"):
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            _secured(r)
            policy = r.headers["content-security-policy"]
            script_src = next(p for p in policy.split(";") if p.strip().startswith("script-src")).split()[1:]
            assert "'unsafe-inline'" not in script_src and "'self'" not in script_src
            hosts = {s for s in script_src if not s.startswith("'")}
            assert hosts == {"https://cdn.jsdelivr.net"}, policy
            # every script of the page is either from that CDN or inline with its hash in the policy
            for src in re.findall(r'<script src="([^"]+)"', r.text):
                assert src.startswith("https://cdn.jsdelivr.net/"), src
            for body in re.findall(r"<script>(.*?)</script>", r.text, re.S):
                digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                assert f"'sha256-{digest}'" in script_src, path
