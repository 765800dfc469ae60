"""The operator console in a real headless Chromium (Debian's package, driven by Playwright): sign
in, start an investigation on the imported real incident, watch it conclude live over SSE, open the
evidence, judge hypotheses, download the report, and check that a viewer token cannot act. The
screenshots the README shows are written here (docs/screenshots/)."""

from __future__ import annotations

import re

from console_kit import ROOT, SHOTS

from vigil.model import HypothesisState, Role

VIEWPORT = {"width": 1280, "height": 720}


def _no_horizontal_overflow(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"], f"{page.url} is {width}px wide at 1280x720"


def _sign_in(page, console, token: str) -> None:
    page.goto(console.url + "/ui/")
    assert "/ui/login" in page.url                      # not signed in: the login page
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/s/demo/$"))


def test_an_operator_runs_an_investigation_live_and_judges_it(console, chromium):
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = chromium.new_context(viewport=VIEWPORT, accept_downloads=True, color_scheme="light")
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        # a wrong token is refused with a message
        page.goto(console.url + "/ui/login")
        page.get_by_label("API token").fill("vgl_not-a-token")
        page.get_by_role("button", name="Sign in").click()
        assert "not valid" in page.get_by_role("alert").inner_text()
        errors.clear()                  # the browser logs the refused sign-in's 401

        _sign_in(page, console, console.tokens[Role.OPERATOR])
        assert page.evaluate("document.cookie") == ""            # the session cookie is HttpOnly
        # keyboard: the first Tab reaches the skip link, which leads to the content
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        # the space switcher lists only the token's space
        page.locator(".switcher summary").click()
        assert page.locator(".switcher li a").all_inner_texts()[:-1] == ["demo"]
        page.locator(".switcher summary").click()

        page.get_by_role("link", name="Start an investigation").first.click()
        page.get_by_label("Latest alarm in the window").check()
        page.get_by_label("Date and time of the incident (UTC)").fill("2023-01-29T15:42")
        page.get_by_label("Window (either side of that time)").select_option("1h")
        page.get_by_label("What do you see? (optional)").fill("users report failed bookings")
        page.get_by_role("button", name="Start the investigation").click()
        page.wait_for_url(re.compile(r"/ui/s/demo/investigations/inv_[0-9a-f]+$"))
        inv_id = page.url.rsplit("/", 1)[1]
        page.evaluate("window.__same_page = true")

        # the journal and the verdict arrive over SSE, without reloading the page
        page.locator('#inv-status[data-final="1"]').wait_for(timeout=120_000)
        assert page.evaluate("window.__same_page") is True
        assert page.locator("#inv-status").inner_text() == "concluded"
        page.locator(".rc-service").wait_for()
        assert page.locator(".rc-service").inner_text() == ROOT
        steps = page.locator("#journal li")
        assert steps.count() >= 5 and page.locator("#journal li.j-conclusion").count() == 1
        kinds = page.locator("#journal .jk").all_inner_texts()
        assert kinds[0] == "note" and "query" in kinds and "analysis" in kinds
        assert page.locator(".rc .badge.fk").inner_text() and "%" in page.locator(".rc .conf").inner_text()
        assert page.locator(".alts > li").count() >= 2

        # the evidence: charts with the anomalous segment and baseline, a waterfall, the path on the graph
        ev = page.locator("#evidence")
        assert ROOT in ev.locator("h2").inner_text()
        chart = ev.locator("svg.chart").first
        assert chart.locator("rect.anom").count() == 1 and chart.locator("line.base").count() == 1
        assert chart.locator("polyline.line").count() == 1
        assert ev.locator("svg.waterfall g.bar.hl").count() >= 1
        assert ev.locator(f'svg.topo g.node.suspect[data-service="{ROOT}"]').count() == 1
        assert ev.locator("svg.timeline").count() == 1
        ev.get_by_text("pieces of evidence").click()
        assert ev.locator("details.all-ev li").first.is_visible()
        _no_horizontal_overflow(page)
        page.screenshot(path=str(SHOTS / "investigation.png"), full_page=True)

        # open an alternative's evidence, then accept the root cause and note on the alternative
        alt = page.locator(".alts > li").first
        alt_name = alt.locator(".alt-head b").inner_text()
        alt.get_by_role("link", name=f"Evidence for {alt_name}").click()
        page.wait_for_url(re.compile(r"\?h=hyp_"))
        assert alt_name in page.locator("#evidence h2").inner_text()
        page.get_by_role("button", name=re.compile(f"^Accept {ROOT}")).click()
        page.wait_for_load_state()
        assert page.locator(".rc .badge.hs-accepted").text_content() == "accepted"
        first_alt = page.locator(".alts > li").first
        first_alt.get_by_text("Add a note").click()
        first_alt.get_by_label(f"Note on {alt_name}").fill("checked: its latency follows the root cause")
        first_alt.get_by_role("button", name="Save the note").click()
        page.wait_for_load_state()
        assert "follows the root cause" in page.locator(".alts > li").first.inner_text()
        hyps = console.state.hypotheses(inv_id)
        assert hyps[0].resource == ROOT and hyps[0].state is HypothesisState.ACCEPTED
        assert hyps[1].note == "checked: its latency follows the root cause"
        journal = [j.message for j in console.state.journal(inv_id)]
        assert any("accepted hypothesis #1" in m and "via console" in m for m in journal)

        # the report downloads
        page.get_by_text("Download the report").click()
        with page.expect_download() as dl:
            page.get_by_role("link", name="Markdown").click()
        report = dl.value.path().read_text()
        assert dl.value.suggested_filename == f"vigil-{inv_id}.md" and ROOT in report and "accepted" in report

        # dark mode, then the dashboard, topology and sources pages at 1280x720
        page.get_by_role("button", name="Dark mode").click()
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        page.screenshot(path=str(SHOTS / "investigation-dark.png"))
        page.get_by_role("button", name="Light mode").click()
        page.get_by_role("link", name="Dashboard").click()
        assert page.locator("table.invs tbody tr").count() >= 1
        row = page.locator("table.invs tbody tr", has_text=ROOT).first
        assert "concluded" in row.inner_text() and "accepted" in row.inner_text()
        _no_horizontal_overflow(page)
        page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
        page.get_by_role("link", name="Topology").click()
        assert page.locator(f'svg.topo g.node.suspect[data-service="{ROOT}"]').count() == 1
        assert page.locator("svg.topo path.edge").count() > 10
        assert "traces" in page.locator("#edges-h + table").inner_text()
        _no_horizontal_overflow(page)
        page.screenshot(path=str(SHOTS / "topology.png"))
        page.get_by_role("link", name="Sources").click()
        assert "Embedded store" in page.content()
        _no_horizontal_overflow(page)
        assert not errors, errors
    finally:
        ctx.close()


def test_a_viewer_sees_everything_but_cannot_act(console, chromium, concluded):
    ctx = chromium.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    try:
        _sign_in(page, console, console.tokens[Role.VIEWER])
        assert page.get_by_role("link", name="Start an investigation").count() == 0
        page.goto(f"{console.url}/ui/s/demo/investigations/{concluded}")
        assert page.locator(".rc-service").inner_text() == ROOT
        assert page.locator("#evidence svg.chart").count() >= 1          # sees the evidence
        assert page.get_by_role("button", name=re.compile("^(Accept|Discard)")).count() == 0
        assert page.get_by_text("Add a note").count() == 0
        # posting anyway (with a valid CSRF token from the page) is refused
        csrf = page.locator("form[action='/ui/logout'] input[name=csrf]").get_attribute("value")
        hyp = console.state.hypotheses(concluded)[0]
        r = page.request.post(f"{console.url}/ui/s/demo/investigations/{concluded}/hypotheses/{hyp.id}/accept",
                              form={"csrf": csrf})
        assert r.status == 403 and "operator role" in r.text()
        r = page.request.post(f"{console.url}/ui/s/demo/start",
                              form={"csrf": csrf, "starting_point": "latest-alarm", "at": "2023-01-29T15:42",
                                    "window": "1h"})
        assert r.status == 403
        assert page.goto(f"{console.url}/ui/s/demo/start").status == 403
        assert console.state.hypotheses(concluded)[0].state is HypothesisState.PROPOSED
    finally:
        ctx.close()
