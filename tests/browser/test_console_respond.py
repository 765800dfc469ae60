"""The console's respond pages in Chromium: the mitigation spec, approving an action (it runs once, against
a deployer that checks the signature), chat, the post-incident report downloads and the prevention
backlog; a viewer sees them without buttons and is refused if it posts. Writes docs/screenshots/respond.png
and prevention.png."""

from __future__ import annotations

import re

import pytest
from console_kit import ROOT, SHOTS, login
from respond.standins import StandIn

from vigil.model import Role

VIEWPORT = {"width": 1280, "height": 720}
SECRET = "console-deployer-secret-0123456789"


@pytest.fixture(scope="module")
def deployer(console):
    mp = pytest.MonkeyPatch()
    mp.setenv("VIGIL_SECRET_CONSOLE_DEPLOYER", SECRET)
    calls: list = []
    with StandIn(deployer_secret=SECRET, on_deploy=calls.append) as s:
        console.runtime.respond.set_action("demo", "webhook", True, {
            "url": s.url + "/deployer", "secret": {"env": "VIGIL_SECRET_CONSOLE_DEPLOYER"}, "verify_for_s": 5,
            "verify_timeout_s": 10}, "test")
        s.calls = calls
        yield s
    mp.undo()


def _sign_in(page, console, token: str) -> None:
    page.goto(console.url + "/ui/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/s/demo/$"))


def test_an_operator_reads_the_spec_approves_an_action_and_asks(console, chromium, concluded, deployer):
    action = console.runtime.respond.propose("demo", concluded, "webhook", {"operation": "restart", "service": ROOT},
                                             "token:test (runbook)")
    ctx = chromium.new_context(viewport=VIEWPORT, accept_downloads=True, color_scheme="light")
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        _sign_in(page, console, console.tokens[Role.OPERATOR])
        page.goto(f"{console.url}/ui/s/demo/investigations/{concluded}")
        page.get_by_role("link", name="Respond: mitigation, actions, chat").click()
        page.wait_for_url(re.compile(r"/respond$"))
        spec = page.locator("#spec-1")
        assert ROOT in spec.locator("h3").inner_text()
        assert f"kubectl top pod -l app={ROOT}" in spec.locator("pre.cmd").first.inner_text()
        assert "Verify recovery" in spec.inner_text() and "Risks" in spec.inner_text()
        row = page.locator(f"#action-{action['id']}")
        assert "proposed" in row.inner_text()
        row.get_by_role("button", name=re.compile("Approve and run")).click()
        page.wait_for_url(re.compile(r"/respond#action-"))
        row = page.locator(f"#action-{action['id']}")
        assert "succeeded" in row.inner_text() and "the deployer accepted" in row.inner_text()
        assert len(deployer.calls) == 1 and deployer.calls[0]["service"] == ROOT
        assert row.get_by_role("button").count() == 0            # approved once: no button any more
        page.get_by_label("Ask about this investigation").fill("which logs did you analyze?")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.wait_for_url(re.compile(r"/respond#chat$"))
        answer = page.locator("ol.chat li").last
        assert "which logs did you analyze?" in answer.inner_text() and "I analyzed" in answer.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
        page.screenshot(path=str(SHOTS / "respond.png"), full_page=True)
        with page.expect_download() as dl:
            page.locator("summary", has_text="Post-incident report").click()
            page.get_by_role("link", name="PDF").click()
        assert dl.value.suggested_filename == f"postmortem-{concluded}.pdf"
        assert open(dl.value.path(), "rb").read(5) == b"%PDF-"

        page.get_by_role("link", name="Prevention").click()
        page.get_by_role("button", name="Analyse the investigations again").click()
        page.wait_for_url(re.compile(r"/prevention$"))
        rows = page.locator("table.backlog tbody tr")
        assert rows.count() >= 1
        first = rows.first
        first.get_by_role("combobox").select_option("planned")
        first.get_by_role("button", name="Set").click()
        page.wait_for_url(re.compile(r"/prevention#item-"))
        assert page.locator("table.backlog tbody tr").first.get_by_role("combobox").input_value() == "planned"
        page.screenshot(path=str(SHOTS / "prevention.png"), full_page=True)
        assert errors == []
    finally:
        ctx.close()


def test_a_viewer_sees_the_respond_pages_without_buttons(console, chromium, concluded, deployer):
    action = console.runtime.respond.propose("demo", concluded, "webhook", {"operation": "restart",
                                                                            "service": "ts-basic-service"}, "test")
    ctx = chromium.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    try:
        _sign_in(page, console, console.tokens[Role.VIEWER])
        page.goto(f"{console.url}/ui/s/demo/investigations/{concluded}/respond")
        assert page.locator("#spec-1").count() == 1
        assert page.get_by_role("button", name=re.compile("Approve")).count() == 0
        assert page.get_by_role("button", name=re.compile("Propose")).count() == 0
        page.goto(f"{console.url}/ui/s/demo/prevention")
        assert page.get_by_role("button", name="Analyse the investigations again").count() == 0
    finally:
        ctx.close()
    c = login(console, console.tokens[Role.VIEWER])
    r = c.post(f"/ui/s/demo/actions/{action['id']}/approve", data={"csrf": c.csrf})
    assert r.status_code == 403 and "operator" in r.text
    assert console.runtime.respond.store.get_action(action["id"])["status"] == "proposed"
