"""The server's command line as a user runs it: spaces, tokens, `vigil serve`, and the one-line
errors (unknown space or role, a store the running server owns)."""

from __future__ import annotations

from pathlib import Path

import httpx
from e2e.kit import ServeProcess, vigil_cli

REPO = Path(__file__).resolve().parent.parent


def _error(p) -> str:
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:"), p.stderr
    return " ".join(lines)


def test_spaces_and_tokens_from_the_command_line(tmp_path):
    home = tmp_path / "h"
    assert vigil_cli("space", "create", "shop", home=home).returncode == 0
    assert "already exists" in _error(vigil_cli("space", "create", "shop", home=home))
    assert "space id must be" in _error(vigil_cli("space", "create", "Bad Name!", home=home))
    assert "no space named 'ghost'" in _error(vigil_cli("token", "create", "--space", "ghost", home=home))
    assert "unknown role" in _error(vigil_cli("token", "create", "--space", "shop", "--role", "root", home=home))
    p = vigil_cli("token", "create", "--space", "shop", "--role", "operator", "--name", "ci", home=home)
    assert p.returncode == 0 and p.stdout.strip().startswith("vgl_") and len(p.stdout.strip().splitlines()) == 1
    assert "shown once" in p.stderr
    secret = p.stdout.strip()
    listed = vigil_cli("token", "list", "--space", "shop", home=home)
    assert "operator" in listed.stdout and "ci" in listed.stdout and secret not in listed.stdout
    tok_id = next(w for w in listed.stdout.split() if w.startswith("tok_"))
    assert vigil_cli("token", "revoke", tok_id, home=home).returncode == 0
    assert "no token" in _error(vigil_cli("token", "revoke", "tok_nope", home=home))
    assert "out of range" in _error(vigil_cli("serve", "--port", "70000", home=home))


def test_serve_owns_the_telemetry_store_and_says_so(tmp_path):
    home = tmp_path / "h"
    assert vigil_cli("space", "create", "shop", home=home).returncode == 0
    token = vigil_cli("token", "create", "--space", "shop", "--role", "viewer", home=home).stdout.strip()
    serve = ServeProcess(home, workers=1).start()
    try:
        r = httpx.get(serve.url + "/v1/spaces", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()[0]["id"] == "shop"
        # state-only commands work alongside the server; telemetry ones get a clear error
        assert vigil_cli("token", "list", "--space", "shop", home=home).returncode == 0
        msg = _error(vigil_cli("import", str(REPO / "demo" / "nezha-trainticket"), "--space", "x", home=home))
        assert "in use by another process" in msg and "vigil serve" in msg
        second = ServeProcess(home, workers=1)
        try:
            second.start(timeout=20)
            raise AssertionError("a second server on the same store started")
        except RuntimeError as exc:
            assert "in use by another process" in str(exc)
        log = serve.log.read_text()
        assert token not in log and "serving on http://127.0.0.1" in log
    finally:
        serve.stop()
    assert serve.proc.returncode in (0, -15)     # SIGTERM: graceful shutdown (uvicorn re-raises the signal)
