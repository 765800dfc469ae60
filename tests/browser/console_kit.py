"""Shared constants and helpers of the console tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")
ROOT = "ts-preserve-service"
WINDOW = {"start": "2023-01-29T15:00:00Z", "end": "2023-01-29T16:30:00Z"}


def login(console, token: str, client: httpx.Client | None = None) -> httpx.Client:
    """A signed-in HTTP client (cookie jar) with the session's CSRF token in ``client.csrf``."""
    c = client or httpx.Client(base_url=console.url, timeout=30.0)
    page = c.get("/ui/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    r = c.post("/ui/login", data={"login_csrf": nonce, "token": token, "next": ""})
    assert r.status_code == 303, r.text
    home = c.get(r.headers["location"])
    assert home.status_code == 200
    c.csrf = re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)
    return c
