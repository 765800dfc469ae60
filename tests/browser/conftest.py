"""A real Vigil server (uvicorn on a loopback port, the shipped Nezha Train-Ticket incident imported)
for the console tests, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from console_kit import CHROMIUM, REPO, WINDOW
from e2e.kit import live_server, wait_for

from vigil.ingest import discover
from vigil.model import Role


@pytest.fixture(scope="session")
def console(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("console"), workers=2) as lv:
        lv.runtime.app.import_recording(discover([REPO / "demo" / "nezha-trainticket"])[0], "demo")
        lv.space("other")
        lv.tokens = {r: lv.token("demo", r, name=f"console-{r.value}") for r in Role}
        lv.other_token = lv.token("other", Role.OPERATOR, name="other-op")
        yield lv


@pytest.fixture(scope="session")
def concluded(console) -> str:
    """An investigation started over the REST API and run to its end (for the tests that do not start one)."""
    with console.client(console.tokens[Role.OPERATOR]) as c:
        r = c.post("/v1/spaces/demo/investigations", json={"starting_point": "latest-alarm", **WINDOW})
        assert r.status_code == 202, r.text
        inv = r.json()["id"]
        wait_for(lambda: c.get(f"/v1/spaces/demo/investigations/{inv}").json()["status"] not in ("queued", "running"),
                 120, 0.1, "the investigation")
    return inv


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()
