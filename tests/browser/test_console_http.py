"""The console's security and pages over plain HTTP (no browser): session cookie flags, CSRF on every
form, roles, space isolation, revocation, sign-out, the cookie-authenticated live journal,
pagination, and one-line HTML errors instead of tracebacks."""

from __future__ import annotations

import re

import httpx
from console_kit import ROOT, login
from e2e.kit import read_events

from vigil.model import HypothesisState, Role


def test_sign_in_sets_a_strict_httponly_session_and_never_echoes_the_token(console):
    c = httpx.Client(base_url=console.url, timeout=30.0)
    page = c.get("/ui/login")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    assert page.headers["x-frame-options"] == "DENY"
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    secret = console.tokens[Role.OPERATOR]
    # the sign-in form itself is CSRF-protected (double-submit cookie)
    assert c.post("/ui/login", data={"login_csrf": "forged", "token": secret}).status_code == 403
    bad = c.post("/ui/login", data={"login_csrf": nonce, "token": "vgl_wrong"})
    assert bad.status_code == 401 and "not valid" in bad.text
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', bad.text).group(1)
    r = c.post("/ui/login", data={"login_csrf": nonce, "token": secret})
    assert r.status_code == 303 and r.headers["location"] == "/ui/s/demo/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("vigil_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert secret not in cookie
    home = c.get("/ui/s/demo/")
    assert home.status_code == 200 and secret not in home.text and "Dashboard" in home.text
    # a second sign-in issues a new session id (no fixation)
    c2 = login(console, secret, httpx.Client(base_url=console.url, cookies=c.cookies, timeout=30.0))
    assert c2.cookies.get("vigil_session", path="/ui") != cookie.split(";")[0].split("=", 1)[1]


def test_every_form_needs_the_session_csrf_token_and_the_same_origin(console, concluded):
    c = login(console, console.tokens[Role.OPERATOR])
    hyp = console.state.hypotheses(concluded)[-1]
    url = f"/ui/s/demo/investigations/{concluded}/hypotheses/{hyp.id}/discard"
    assert c.post(url, data={"note": "no csrf"}).status_code == 403
    assert c.post(url, data={"csrf": "x" * 43}).status_code == 403
    assert c.post(url, data={"csrf": c.csrf}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert c.post(url, json={"csrf": c.csrf}).status_code == 415
    assert console.state.hypotheses(concluded)[-1].state is HypothesisState.PROPOSED
    r = c.post(url, data={"csrf": c.csrf}, headers={"Origin": console.url})
    assert r.status_code == 303 and console.state.hypotheses(concluded)[-1].state is HypothesisState.DISCARDED
    # a note needs text; bad input is a one-line HTML error, not a traceback
    bad = c.post(f"/ui/s/demo/investigations/{concluded}/hypotheses/{hyp.id}/note", data={"csrf": c.csrf})
    assert bad.status_code == 400 and "Traceback" not in bad.text and "note" in bad.text
    r = c.post("/ui/s/demo/start", data={"csrf": c.csrf, "starting_point": "latest-alarm", "at": "yesterday",
                                         "window": "1h"})
    assert r.status_code == 400 and "invalid date and time" in r.text
    r = c.post("/ui/s/demo/start", data={"csrf": c.csrf, "starting_point": "latest-alarm",
                                         "at": "2020-01-01T00:00", "window": "1h"})
    assert r.status_code == 400 and "no alert in space" in r.text
    r = c.post("/ui/s/demo/start", data={"csrf": c.csrf, "starting_point": "gut-feeling",
                                         "at": "2023-01-29T15:42", "window": "1h"})
    assert r.status_code == 400 and "starting_point" in r.text
    assert c.get("/ui/s/demo/investigations/inv_nope").status_code == 404


def test_spaces_are_isolated_and_the_switcher_lists_only_signed_in_spaces(console):
    c = login(console, console.tokens[Role.VIEWER])
    assert c.get("/ui/s/other/").status_code == 403
    assert ">other<" not in c.get("/ui/s/demo/").text
    login(console, console.other_token, c)                 # add the other space to the same session
    page = c.get("/ui/s/demo/").text
    assert 'href="/ui/s/other/"' in page and 'href="/ui/s/demo/"' in page
    assert c.get("/ui/s/other/").status_code == 200
    # the role is per space: operator in 'other', still a viewer in 'demo'
    assert c.get("/ui/s/other/start").status_code == 200 and c.get("/ui/s/demo/start").status_code == 403


def test_revoked_tokens_and_signed_out_sessions_stop_working(console):
    _secret, tok = console.state.create_token("demo", Role.OPERATOR, name="short-lived")
    c = login(console, _secret)
    assert c.get("/ui/s/demo/").status_code == 200
    console.state.revoke_token(tok.id)
    r = c.get("/ui/s/demo/")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    c = login(console, console.tokens[Role.VIEWER])
    cookie = c.cookies.get("vigil_session", path="/ui")
    assert c.post("/ui/logout", data={"csrf": "wrong"}).status_code == 403
    assert c.post("/ui/logout", data={"csrf": c.csrf}).status_code == 303
    stale = httpx.Client(base_url=console.url, cookies={"vigil_session": cookie}, timeout=30.0)
    assert stale.get("/ui/s/demo/").status_code == 303                     # the old cookie is dead


def test_the_live_journal_and_pages_work_with_the_session_cookie(console, concluded):
    c = login(console, console.tokens[Role.VIEWER])
    events = read_events(c, f"/ui/s/demo/investigations/{concluded}/events")
    assert [e[0] for e in events][-1] == "end"
    assert [e for e in events if e[0] == "hypotheses"][-1][2][0]["resource"] == ROOT
    assert httpx.get(f"{console.url}/ui/s/demo/investigations/{concluded}/events").status_code == 303
    for path in ("topology", "sources", f"investigations/{concluded}", f"investigations/{concluded}/panel"):
        r = c.get(f"/ui/s/demo/{path}")
        assert r.status_code == 200, (path, r.text[:300])
        assert "<script src=\"http" not in r.text and "cdn" not in r.text.lower()
    r = c.get(f"/ui/s/demo/investigations/{concluded}/report", params={"format": "html"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"] and ROOT in r.text
    assert c.get(f"/ui/s/demo/investigations/{concluded}/report", params={"format": "exe"}).status_code == 422


def test_the_dashboard_pages_through_investigations_by_keyset(console, concluded):
    from datetime import timedelta

    from vigil.model import StartingPoint, Trigger, TriggerKind, Window

    inv = console.state.get_investigation(concluded)
    for _ in range(30):
        console.state.create_investigation("demo", Trigger(kind=TriggerKind.MANUAL,
                                                           starting_point=StartingPoint.FREE_TEXT, text="paging"),
                                           Window.around(inv.window.onset, timedelta(hours=1), timedelta(minutes=5)))
    c = login(console, console.tokens[Role.VIEWER])
    seen: list[str] = []
    url = "/ui/s/demo/"
    for _ in range(10):
        page = c.get(url).text
        ids = re.findall(r'<td><a href="/ui/s/demo/investigations/(inv_[0-9a-f]+)">', page)
        assert ids and not set(ids) & set(seen)
        seen += ids
        nxt = re.search(r'rel="next" href="([^"]+)"', page)
        if not nxt:
            break
        url = nxt.group(1).replace("&amp;", "&")
    total = sum(v for k, v in console.state.count_investigations().items())
    assert len(seen) == total and concluded in seen
    assert c.get("/ui/s/demo/", params={"after": "garbage!"}).status_code == 200
    assert c.get("/ui/s/demo/", params={"status": "weird"}).status_code == 422
    queued = c.get("/ui/s/demo/", params={"status": "queued"}).text
    assert concluded not in queued


def test_the_sources_page_shows_connectors_mcp_servers_and_their_last_check(console):
    st = console.state
    st.put_source("demo", "prom", "prometheus", {"url": "http://127.0.0.1:9090", "token": {"env": "PROM_TOKEN"},
                                                 "timeout_s": 5}, check=(True, "Prometheus 2.45 answered"))
    st.put_source("demo", "git-mcp", "mcp", {"command": ["mcp-server-git"], "api_key": "literal-should-hide"},
                  check=(False, "the MCP server did not answer within 5 s"))
    try:
        c = login(console, console.tokens[Role.VIEWER])
        page = c.get("/ui/s/demo/sources").text
        assert "prom" in page and "prometheus" in page and "Prometheus 2.45 answered" in page
        assert "from env PROM_TOKEN" in page and "literal-should-hide" not in page
        mcp = page.split('id="mcp-h"')[1].split("</section>")[0]
        assert "git-mcp" in mcp and "failed" in mcp and "did not answer" in mcp and "prom<" not in mcp
        assert "shown to admin tokens only" in page                     # integrations: admin only
        admin = login(console, console.tokens[Role.ADMIN])
        assert "No signed webhook integrations" in admin.get("/ui/s/demo/sources").text
    finally:
        st.delete_source("demo", "prom")
        st.delete_source("demo", "git-mcp")
