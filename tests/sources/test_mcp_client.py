"""Vigil as an MCP client ("bring your own MCP server"), against real MCP servers:

- the real ``mcp-server-git`` from PyPI over stdio, on a real temporary git repository with dated
  commits: registration check, ``git_log`` mapped to the changes role, an agent tool call journaled by
  a real investigation, mutating tools refused;
- an MCP server of the project's own (``mcp_fixture_server.py``, the SDK's ``MCPServer``) over
  streamable HTTP on a loopback port behind a bearer-token check: registration, wrong token, the
  metrics role, a tool slower than the timeout, an output larger than the budget;
- the link-local / metadata deny list at registration."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.errors import InputError, VigilError
from vigil.sources import registry
from vigil.sources.connector import build, validate_config
from vigil.sources.mcp_tools import run_agent_tools

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ONSET = datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp()
TOKEN = "fixture-token-8c1f"      # the fixture server's bearer token (test-only)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout


def _commit(repo: Path, path: str, message: str, ts: float, author: str) -> str:
    f = repo / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f"{message}\n")
    _git(repo, "add", path)
    when = datetime.fromtimestamp(ts, UTC).isoformat()
    name, email = author.split(" <")
    _git(repo, "commit", "-q", "-m", message,
         env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_NAME": name,
              "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_COMMITTER_NAME": name,
              "GIT_COMMITTER_EMAIL": email.rstrip(">")})
    return _git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A real repository: one old commit (outside the window), then three in the hour before ONSET."""
    r = tmp_path_factory.mktemp("repo")
    _git(r, "init", "-q", "-b", "main")
    shas = {
        "old": _commit(r, "services/cart/app.py", "feat(cart): old", ONSET - 5 * 86400, "Old Timer <o@x.io>"),
        "checkout": _commit(r, "services/checkout/main.go", "fix: retry payment", ONSET - 1800, "Ann Dev <a@x.io>"),
        "scoped": _commit(r, "docs/notes.md", "chore(frontend): bump", ONSET - 900, "Bo Ops <b@x.io>"),
        "cart": _commit(r, "services/cart/app.py", "perf(cart): cache\n\nlong body", ONSET - 300,
                        "Ann Dev <a@x.io>"),
    }
    return r, shas


def git_config(repo_path: Path, **extra) -> dict:
    return {"transport": "stdio", "command": sys.executable,
            "args": ["-m", "mcp_server_git", "--repository", str(repo_path)],
            "variables": {"repo_path": str(repo_path)}, "timeout_s": 15, **extra}


GIT_LOG_ROLE = {
    "role": "changes", "tool": "git_log",
    "arguments": {"repo_path": "{repo_path}", "max_count": 200,
                  "start_timestamp": "{start_iso}", "end_timestamp": "{end_iso}"},
    "parse": {"format": "git-log",
              "paths": {"services/cart/*": "cart", "services/checkout/*": "checkout"},
              "message_pattern": r"^\w+\((?P<resource>[^)]+)\)",
              "defaults": {"kind": "commit"}}}


def _mcp_children() -> list[str]:
    """Command lines of live or zombie children of this process that look like MCP servers."""
    out = []
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[1] == me and ("mcp_server_git" in cmd or "sleep" in cmd or fields[0] == "Z"):
            out.append(f"{fields[0]} {cmd}")
    return out


# -- mcp-server-git (stdio) -------------------------------------------------------------------------
def test_git_server_registration_lists_tools(repo):
    r, _ = repo
    cfg = git_config(r, roles=[GIT_LOG_ROLE], agent_tools=[{"tool": "git_status",
                                                            "arguments": {"repo_path": "{repo_path}"}}])
    res = registry.check("git", "mcp", cfg)
    assert res.ok, res.message
    assert res.message.startswith("MCP server mcp-git ") and "answered: 12 tools (7 read-only)" in res.message
    assert "changes<-git_log" in res.message and "agent tools git_status" in res.message
    # a stored config (defaults dropped) builds the same connector, whose roles come from its config
    conn = build("git", "mcp", registry.normalize("mcp", cfg))
    assert conn.roles == frozenset({"changes"})
    assert not _mcp_children()


def test_git_log_maps_to_change_events(repo):
    r, shas = repo
    conn = build("git", "mcp", git_config(r, roles=[GIT_LOG_ROLE]))
    df = conn.changes(ONSET - 3600, ONSET + 600)
    got = {(row.resource, row.ts, row.author, row.description) for row in df.itertuples()}
    assert got == {
        ("checkout", ONSET - 1800, "Ann Dev", f"{shas['checkout'][:12]} fix: retry payment"),   # by path
        ("frontend", ONSET - 900, "Bo Ops", f"{shas['scoped'][:12]} chore(frontend): bump"),    # by scope
        ("cart", ONSET - 300, "Ann Dev", f"{shas['cart'][:12]} perf(cart): cache"),             # by path
    }
    assert set(df["kind"]) == {"commit"} and list(df.columns) == ["resource", "ts", "kind", "description", "author",
                                                                   "detail"]
    # the commit days before is outside the window: git_log filtered it (and so would the connector)
    assert conn.changes(ONSET - 6 * 86400, ONSET - 4 * 86400)["resource"].tolist() == ["cart"]
    assert not _mcp_children()     # every session's child process was reaped


def test_mutating_git_tools_are_refused(repo):
    r, _ = repo
    head = _git(r, "rev-parse", "HEAD")
    commit = {"tool": "git_commit", "arguments": {"repo_path": "{repo_path}", "message": "x"}}
    res = registry.check("git", "mcp", git_config(r, agent_tools=[commit]))
    assert not res.ok
    assert "tool 'git_commit' (agent tool) is not annotated readOnlyHint=true" in res.message
    assert "treated as mutating" in res.message
    role = {"role": "changes", "tool": "git_reset", "arguments": {"repo_path": "{repo_path}"},
            "parse": {"format": "git-log", "defaults": {"resource": "repo"}}}
    # registered without a check (or the server changed since): refused at call time too, never called
    conn = build("git", "mcp", git_config(r, agent_tools=[commit]))
    recs = conn.call_agent_tools({"window": {"start": ONSET - 60, "end": ONSET, "onset": ONSET}, "hypotheses": []})
    assert [(x["kind"], x["data"]["outcome"]) for x in recs] == [("warning", "refused")]
    with pytest.raises(VigilError, match=r"'git_reset' \(role changes\) is not annotated readOnlyHint=true"):
        build("git", "mcp", git_config(r, roles=[role])).changes(ONSET - 60, ONSET)
    assert _git(r, "rev-parse", "HEAD") == head


def test_stdio_failures_are_one_line_and_bounded(tmp_path):
    res = registry.check("x", "mcp", {"transport": "stdio", "command": str(tmp_path / "no-such-server")})
    assert not res.ok and "command not found" in res.message and "\n" not in res.message
    res = registry.check("x", "mcp", {"transport": "stdio", "command": sys.executable,
                                      "args": ["-c", "import sys; sys.stderr.write('boom: no repo\\n')"]})
    assert not res.ok and "closed the connection" in res.message and "boom: no repo" in res.message
    # a process that never answers the handshake: bounded, reported, and killed
    t0 = time.monotonic()
    res = registry.check("x", "mcp", {"transport": "stdio", "command": "sleep", "args": ["60"], "timeout_s": 1})
    assert not res.ok and "did not answer within 1 s" in res.message
    assert time.monotonic() - t0 < 8
    deadline = time.monotonic() + 8
    while _mcp_children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _mcp_children()


# -- a stdio server that hangs: bounded, killed, nothing left open -----------------------------------
HANG = HERE / "mcp_hang_server.py"


def _hang_endpoint(pidfile: Path, *flags: str, **extra):
    from vigil.sources.mcp_client import Endpoint
    return Endpoint("hang", "stdio", command=sys.executable, args=[str(HANG), str(pidfile), *flags], **extra)


async def _call_hang(s):
    return await s.client.call_tool("hang", {})


def _fds() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


def _gone(pid: int, within: float = 3.0) -> bool:
    """Whether the process is gone, reaped included (a zombie still answers signal 0)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _pid(pidfile: Path) -> int:
    return int(pidfile.read_text())


def _mcp_threads() -> list[str]:
    import threading
    return [t.name for t in threading.enumerate() if t.name.startswith("vigil-mcp-")]


@pytest.mark.parametrize("flags", [(), ("--ignore-term",)], ids=["hangs", "hangs-ignoring-sigterm"])
def test_stdio_server_hanging_on_a_tool_call_times_out_killed_without_leaks(tmp_path, flags):
    from vigil.sources.connector import SourceError
    from vigil.sources.mcp_client import SHUTDOWN_GRACE_S, run_session
    reps = 3 if not flags else 1
    before = _fds()
    for i in range(reps):
        pidfile = tmp_path / f"pid{i}"
        t0 = time.monotonic()
        with pytest.raises(SourceError) as err:
            run_session(_hang_endpoint(pidfile, *flags), _call_hang, 1.0)
        took = time.monotonic() - t0
        assert "did not answer within 1 s" in str(err.value) and "\n" not in str(err.value)
        assert "its stderr: hanging on tools/call" in str(err.value)
        assert took < 1.0 + SHUTDOWN_GRACE_S, took     # the SDK's shutdown, not the caller's give-up
        assert _gone(_pid(pidfile)), f"the hung server {_pid(pidfile)} outlived its session"
    after = _fds()
    leaked = {fd: target for fd, target in after.items() if fd not in before or before[fd] != target}
    assert not [t for t in leaked.values() if "(deleted)" in t or t.startswith(tempfile.gettempdir())], leaked
    assert len(after) - len(before) < reps, leaked          # noise allowed, one per call is a leak
    assert not _mcp_threads() and not _mcp_children()


def test_abandoned_session_kills_its_server_and_closes_its_stderr_file(tmp_path, monkeypatch):
    """The worker's event loop is blocked (the deadline cannot fire): the caller gives up after
    timeout + grace, kills the server itself, and the worker closes the stderr file when it ends."""
    from vigil.sources import mcp_client
    from vigil.sources.connector import SourceError
    monkeypatch.setattr(mcp_client, "SHUTDOWN_GRACE_S", 0.5)
    pidfile = tmp_path / "pid"

    async def stuck(s):
        time.sleep(4)       # blocks the loop: no cancellation reaches the session until it returns

    before = _fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="did not answer within 1 s"):
            mcp_client.run_session(_hang_endpoint(pidfile), stuck, 1.0)
        assert time.monotonic() - t0 < 2.5
        assert _mcp_threads()                               # the worker is still stuck ...
        assert _gone(_pid(pidfile), within=2.0)             # ... but its server is already dead
        deadline = time.monotonic() + 10
        while _mcp_threads() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _mcp_threads()
        gc.collect()
    # closed by the worker, not left to the garbage collector
    assert not [str(w.message) for w in caught if "unclosed file" in str(w.message)]
    after = _fds()
    assert not [t for fd, t in after.items() if fd not in before and "(deleted)" in t], after
    assert len(after) <= len(before) + 1


def test_stdio_server_stderr_is_bounded_and_masks_secrets(tmp_path, monkeypatch):
    """A server that never answers the handshake and prints its credential: the journaled warning
    (not scrubbed downstream) shows its last stderr line with the secret masked."""
    secret = "hang-secret-5d2e9a"
    monkeypatch.setenv("TEST_HANG_SECRET", secret)
    pidfile = tmp_path / "pid"
    cfg = {"transport": "stdio", "command": sys.executable, "args": [str(HANG), str(pidfile), "--silent"],
           "secret_env": {"HANG_SECRET": {"env": "TEST_HANG_SECRET"}}, "timeout_s": 1,
           "agent_tools": [{"tool": "hang"}]}
    recs = build("hang", "mcp", cfg).call_agent_tools({"window": {"start": 0, "end": 1, "onset": 0},
                                                         "hypotheses": []})
    assert [r["data"]["outcome"] for r in recs] == ["failed"]
    msg = recs[0]["message"]
    assert "did not answer within" in msg and "its stderr: starting with api key ***" in msg
    assert secret not in str(recs)
    assert _gone(_pid(pidfile))
    # only the end of a large stderr is read back, and a secret cut in half by the window is dropped
    from vigil.sources.mcp_client import STDERR_TAIL_BYTES, _tail
    with open(tmp_path / "err", "w+", encoding="utf-8") as f:
        f.write("x" * (STDERR_TAIL_BYTES - 10) + secret + "\n" + "y" * 5000 + "\nlast line " + secret + "\n")
        f.flush()
        assert _tail(f, secrets=(secret,)) == "last line ***"
        f.write("z" * (STDERR_TAIL_BYTES - 8) + secret + "\n")
        f.flush()
        assert _tail(f, secrets=(secret,)) == ""               # no whole line in the window
        f.write("w" * 500 + "\n")
        f.flush()
        assert _tail(f) == "w" * 200


def test_investigation_uses_changes_and_journals_agent_tool(repo, tmp_path):
    """A real investigation (demo Train-Ticket recording) with mcp-server-git registered: its git_log
    feeds the engine change events, and an agent tool call lands in the journal."""
    from vigil.app import App
    from vigil.config import Settings
    from vigil.model import JournalKind

    home = tmp_path / "home"
    app = App(Settings(home=home, database_url=f"sqlite:///{home / 'state.db'}",
                       telemetry_path=home / "t.duckdb", reports_dir=home / "reports"))
    try:
        rec = app.discover([REPO / "demo" / "nezha-trainticket"])[0]
        app.import_recording(rec, "demo")
        onset = app.alerts("demo")[-1].at.timestamp()
        r = tmp_path / "svc-repo"
        _git(r.parent, "init", "-q", "-b", "main", str(r))
        sha = _commit(r, "services/ts-preserve-service/Main.java", "tune thread pool", onset - 240,
                      "Ann Dev <a@x.io>")
        role = {**GIT_LOG_ROLE, "parse": {"format": "git-log",
                                          "paths": {"services/ts-preserve-service/*": "ts-preserve-service"}}}
        cfg = git_config(r, roles=[role], agent_tools=[
            {"tool": "git_show", "arguments": {"repo_path": "{repo_path}", "revision": "HEAD"}},
            {"tool": "git_log", "arguments": {"repo_path": "{repo_path}", "max_count": 3,
                                              "end_timestamp": "{onset_iso}"}}])
        app.state.put_source("demo", "git", "mcp", registry.normalize("mcp", cfg))
        app.sources.invalidate("demo")          # what the server does when a source changes
        inv, analysis = app.investigate("demo", latest=True)
        journal = app.state.journal(inv.id)
        # the server's analyst child holds only a proxy of the sources: the calls run on this side
        from vigil.agent import Investigator
        from vigil.server.analyst import Analyst
        child_inv = Investigator(app.state, app.sources).start("demo", inv.window.onset)
        analyst = Analyst()
        try:
            assert analyst.run(child_inv, app.state, app.sources, time.monotonic() + 120, lambda: False) is None
        finally:
            analyst.stop()
        child_journal = app.state.journal(child_inv.id)
    finally:
        app.close()
    assert [j.data["tool"] for j in child_journal if j.source == "mcp:git" and j.kind == JournalKind.QUERY] \
        == ["git_show", "git_log"]
    top = analysis.hypotheses[0]
    assert top.resource == "ts-preserve-service"
    assert any(e.kind.value == "change" and sha[:12] in e.title + str(e.detail)
               for h in analysis.hypotheses for e in h.evidence if h.resource == "ts-preserve-service"), \
        [(h.resource, [e.title for e in h.evidence]) for h in analysis.hypotheses[:2]]
    calls = [j for j in journal if j.source == "mcp:git" and j.kind == JournalKind.QUERY]
    assert [c.data["tool"] for c in calls] == ["git_show", "git_log"]
    show = calls[0]
    assert show.data["outcome"] == "ok" and show.data["untrusted"] is True
    assert sha in show.data["output"] and "tune thread pool" in show.data["output"]
    assert show.data["chars"] >= len(show.data["output"]) and show.query.startswith("git_show {")
    assert not any("partial evidence" in j.message for j in journal if j.source == "mcp:git")
    assert not _mcp_children()


# -- the project's own MCP server over streamable HTTP ------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fixture_url():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "mcp_fixture_server.py"), "--port", str(port)],
                            env={**os.environ, "FIXTURE_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the fixture server died: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the fixture MCP server did not start")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("FIXTURE_MCP_TOKEN", TOKEN)
    monkeypatch.setenv("FIXTURE_MCP_BAD_TOKEN", "wrong-token-123")


def http_config(url: str, **extra) -> dict:
    return {"transport": "http", "url": url, "token": {"env": "FIXTURE_MCP_TOKEN"}, "timeout_s": 5, **extra}


METRICS_ROLES = [
    {"role": "metrics", "tool": "query_metrics", "arguments": {"start": "{start}", "end": "{end}"},
     "parse": {"records": "data.points", "fields": {"resource": "service", "name": "metric", "ts": "time"}}},
    {"role": "metrics", "tool": "query_range",
     "arguments": {"query": 'histogram_quantile(0.99, rate(x{{job="api"}}[5m]))', "start": "{start}",
                   "end": "{end}", "step": "60s"},
     "parse": {"format": "prometheus", "resource_label": "service"}},
]


def test_http_registration_ok_and_wrong_token(fixture_url, token_env):
    res = registry.check("fx", "mcp", http_config(fixture_url, roles=METRICS_ROLES))
    assert res.ok, res.message
    assert res.message.startswith("MCP server vigil-fixture 1.0 answered: 7 tools (6 read-only)")
    bad = registry.check("fx", "mcp", {**http_config(fixture_url), "token": {"env": "FIXTURE_MCP_BAD_TOKEN"}})
    assert not bad.ok
    assert "HTTP 401 (unauthorized: check the bearer token)" in bad.message
    assert "wrong-token-123" not in bad.message and TOKEN not in bad.message
    none = registry.check("fx", "mcp", {**http_config(fixture_url), "token": None})
    assert not none.ok and "HTTP 401" in none.message
    down = registry.check("fx", "mcp", http_config(f"http://127.0.0.1:{_free_port()}/mcp"))
    assert not down.ok and "cannot connect" in down.message


def test_http_metrics_role_returns_frames(fixture_url, token_env, tmp_path):
    conn = build("fx", "mcp", http_config(fixture_url, roles=METRICS_ROLES))
    start = ONSET - 300
    df = conn.metrics(start, ONSET)
    assert list(df.columns) == ["resource", "name", "ts", "value"]
    recs = df[df["name"] == "latency_p99_ms"]
    prom = df[df["name"] == "http_server_latency_seconds"]
    assert len(recs) == 10 and len(prom) == 10          # 5 minutes x 2 services, from each tool
    assert sorted(set(df["resource"])) == ["cart", "checkout"]
    assert sorted(recs["ts"].unique().tolist()) == [start + 60 * i for i in range(5)]
    first = recs[(recs["resource"] == "cart") & (recs["ts"] == start)]["value"].item()
    assert first == 20.0 + (start // 60) % 5
    assert conn.metrics(start, ONSET, resources=["cart"], names=["latency_p99_ms"])["resource"].tolist() == ["cart"] * 5

    # through the router: a slow MCP source leaves partial evidence and a problem, never a hang
    from vigil.sources.router import SpaceSources
    from vigil.store.telemetry import TelemetryStore
    slow = http_config(fixture_url, timeout_s=1,
                       roles=[{"role": "metrics", "tool": "slow", "arguments": {"seconds": 20}}])
    rows = [{"name": "fx", "kind": "mcp", "config": http_config(fixture_url, roles=METRICS_ROLES)},
            {"name": "slowfx", "kind": "mcp", "config": slow}]
    store = TelemetryStore(tmp_path / "t.duckdb")
    sources = SpaceSources(store, lambda space: rows)
    try:
        t0 = time.monotonic()
        got = sources.metrics("s", start, ONSET)
        assert time.monotonic() - t0 < 5
        assert len(got) == 20 and got.attrs["rows_by_source"]["fx"] == 20
        assert any("slowfx" in p and ("did not answer" in p or "within 1 s" in p) for p in got.attrs["problems"])
    finally:
        sources.close()
        store.close()


def test_http_agent_tools_timeout_budget_and_untrusted_output(fixture_url, token_env):
    cfg = http_config(fixture_url, timeout_s=1.5, max_output_chars=1000, agent_top=2, agent_tools=[
        {"tool": "recent_errors", "arguments": {"service": "{resource}"}},
        {"tool": "slow", "arguments": {"seconds": 30}},
        {"tool": "big", "arguments": {"n": 50000}},
        {"tool": "restart_count"}])
    assert registry.check("fx", "mcp", cfg).ok
    conn = build("fx", "mcp", cfg)
    ctx = {"window": {"start": ONSET - 600, "end": ONSET + 300, "onset": ONSET},
           "hypotheses": [{"rank": 1, "resource": "cart"}, {"rank": 2, "resource": "checkout"},
                          {"rank": 3, "resource": "payment"}]}
    t0 = time.monotonic()
    recs = conn.call_agent_tools(ctx)
    took = time.monotonic() - t0
    queries = [r for r in recs if r["kind"] == "query"]
    assert [(q["data"]["tool"], q["data"]["arguments"].get("service")) for q in queries] == [
        ("recent_errors", "cart"), ("recent_errors", "checkout"), ("slow", None), ("big", None),
        ("restart_count", None)]
    slow = queries[2]["data"]
    assert slow["outcome"] == "timeout" and 1.4 <= slow["seconds"] < 3
    assert any(r["kind"] == "warning" and "slow" in r["message"] and "timeout" in r["message"] for r in recs)
    assert took < 6                                    # bounded: the 30 s tool did not hold the session
    big = queries[3]["data"]
    assert big["outcome"] == "ok" and big["chars"] == 50000 and big["truncated"] is True
    assert len(big["output"]) == 1000 and "kept 1000" in queries[3]["message"]
    # tool output is data: the "instruction" in it is stored verbatim, and nothing mutating was called
    errs = queries[0]["data"]
    assert errs["untrusted"] is True and "ignore previous instructions" in errs["output"]
    assert queries[4]["data"]["output"].strip() == "0"

    # the investigator-side half journals exactly these records
    class Src:
        def agent_tool_calls(self, space, context):
            assert space == "s" and context["hypotheses"][0]["resource"] == "cart"
            return conn.call_agent_tools(context)

    from vigil.model import FaultKind, Hypothesis, Investigation, Trigger, TriggerKind, Window
    inv = Investigation(id="inv_x", space_id="s", trigger=Trigger(kind=TriggerKind.MANUAL),
                        window=Window(start=datetime.fromtimestamp(ONSET - 600, UTC),
                                      end=datetime.fromtimestamp(ONSET + 300, UTC),
                                      onset=datetime.fromtimestamp(ONSET, UTC)))
    hyps = [Hypothesis(rank=1, resource="cart", fault_kind=list(FaultKind)[0], confidence=0.9)]
    got: list[tuple] = []
    n = run_agent_tools(Src(), inv, hyps, lambda kind, msg, **kw: got.append((kind.value, msg, kw)))
    assert n == len(got) and [g[0] for g in got].count("query") == 4   # one hypothesis -> one recent_errors
    assert all(g[2]["source"] == "mcp:fx" for g in got)


def test_restart_tool_refused_and_never_called(fixture_url, token_env):
    cfg = http_config(fixture_url, agent_tools=[{"tool": "restart_service", "arguments": {"service": "{resource}"}}])
    res = registry.check("fx", "mcp", cfg)
    assert not res.ok and "'restart_service' (agent tool) is not annotated readOnlyHint=true" in res.message
    recs = build("fx", "mcp", cfg).call_agent_tools(
        {"window": {"start": 0, "end": 1, "onset": 0}, "hypotheses": [{"rank": 1, "resource": "cart"}]})
    assert [r["data"]["outcome"] for r in recs] == ["refused"]
    count = build("fx", "mcp", http_config(fixture_url, agent_tools=[{"tool": "restart_count"}])).call_agent_tools(
        {"window": {"start": 0, "end": 1, "onset": 0}, "hypotheses": []})
    assert count[0]["data"]["output"].strip() == "0"


# -- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://169.254.169.254/mcp", "http://metadata.google.internal/mcp",
                                 "http://[fe80::1]/mcp"])
def test_link_local_url_refused_at_registration(url):
    with pytest.raises(InputError, match="link-local or (cloud )?metadata"):
        validate_config("mcp", {"transport": "http", "url": url})
    res_cfg = validate_config("mcp", {"transport": "http", "url": url, "allow_link_local": True})
    assert res_cfg.url == url


@pytest.mark.parametrize("cfg, message", [
    ({"transport": "stdio"}, "needs a command"),
    ({"transport": "http"}, "needs a url"),
    ({"transport": "http", "url": "http://127.0.0.1:1/mcp", "command": "x"}, "are for transport stdio"),
    ({"transport": "stdio", "command": "x", "url": "http://127.0.0.1:1/"}, "are for transport http"),
    ({"transport": "stdio", "command": "x", "roles": [{"role": "changes", "tool": "t",
                                                       "arguments": {"p": "{repo}"}}]},
     "unknown placeholder {repo}"),
    ({"transport": "stdio", "command": "x", "roles": [{"role": "metrics", "tool": "t",
                                                       "parse": {"format": "git-log"}}]},
     "git-log serves the changes role only"),
    ({"transport": "stdio", "command": "x", "agent_tools": [{"tool": "t", "arguments": {"a": "{secret}"}}]},
     "unknown placeholder {secret}"),
    ({"transport": "stdio", "command": "x", "env": ["BAD NAME"]}, "not an environment variable name"),
    ({"transport": "sse", "command": "x"}, "transport"),
])
def test_bad_configs_are_one_line_input_errors(cfg, message):
    with pytest.raises(InputError) as err:
        validate_config("mcp", cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_templates_keep_types_and_escape_braces():
    from vigil.sources.mcp_parse import render, time_values
    vals = {**time_values(ONSET - 60, ONSET), "repo_path": "/r"}
    out = render({"q": 'up{{job="a"}}', "start": "{start}", "iso": "at {end_iso}", "n": 5, "l": ["{repo_path}"]}, vals)
    assert out == {"q": 'up{job="a"}', "start": ONSET - 60, "iso": "at 2024-03-01T12:00:00Z", "n": 5, "l": ["/r"]}


def test_documented_examples_are_valid(monkeypatch):
    import re

    import yaml
    monkeypatch.setenv("PROM_MCP_TOKEN", "x")
    doc = (REPO / "docs" / "connectors.md").read_text().split("## MCP servers as sources", 1)[1].split("\n## ")[0]
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert len(blocks) == 2
    models = [validate_config("mcp", yaml.safe_load(b)) for b in blocks]
    assert [m.transport for m in models] == ["stdio", "http"]
    assert models[0].roles[0].parse.format == "git-log" and models[1].roles[0].parse.format == "prometheus"
