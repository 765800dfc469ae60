"""Issue #5's done-means: an investigation whose metrics come from a real Prometheus, whose changes come
from a real Git repository, and whose extra evidence comes from a registered MCP server, concluding with
the right root cause on a recorded incident replayed into those backends.

The incident is the demo case (Nezha Train-Ticket, 2023-01-29 15:42, CPU contention in
ts-preserve-service; MIT, see demo/README.md). Its logs, traces and alert are imported into the embedded
store; its metrics are *not*: they are backfilled into a real /usr/bin/prometheus and reach the engine
only through the Prometheus connector. The recording has no change history, so the Git repository holds
what a deploy repo would: a config commit on another service (ts-food-service) shortly before the
onset, and older commits. The change must reach the engine (as evidence on ts-food-service) without
displacing the real cause. The MCP server is the real `mcp-server-git` over stdio on the same
repository, registered with a read-only agent tool whose calls must be journaled."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigil.app import App
from vigil.config import Settings
from vigil.ingest import discover
from vigil.model import JournalKind

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "nezha-trainticket"
ONSET = datetime(2023, 1, 29, 15, 42, tzinfo=UTC)

pytestmark = pytest.mark.skipif(not (shutil.which("prometheus") and shutil.which("promtool")),
                                reason="needs Debian's prometheus package (prometheus + promtool)")


class _NoMetrics:
    """A telemetry writer that keeps everything but the metrics (those go to Prometheus)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def metrics(self, space, df) -> int:
        return 0

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _git(repo: Path, *args: str, when: datetime | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dana Ops", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana Ops", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when.isoformat()
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _deploy_repo(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    for service, when, text in (
            ("ts-preserve-service", ONSET - timedelta(days=3), "replicas: 2\n"),
            ("ts-food-service", ONSET - timedelta(days=1), "replicas: 1\n"),
            ("ts-food-service", ONSET - timedelta(minutes=6), "replicas: 1\ncache_ttl_s: 30\n")):
        f = path / "services" / service / "config" / "app.yaml"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        _git(path, "add", "-A")
        _git(path, "commit", "-q", "-m", f"{service}: update settings", when=when)
    return path


@pytest.fixture()
def app(tmp_path):
    home = tmp_path / "home"
    os.environ["VIGIL_HOME"] = str(home)
    try:
        a = App(Settings.from_env())
    finally:
        os.environ.pop("VIGIL_HOME", None)
    yield a
    a.close()


def test_investigation_reads_prometheus_git_and_an_mcp_server(app, tmp_path):
    from sources.promkit import replay_case_metrics

    rec = next(iter(discover([DEMO])))
    space = "shop"
    app.create_space(space)
    with app.telemetry.transaction() as w:
        rec.load(_NoMetrics(w), space)
    assert app.telemetry.counts(space)["metrics"] == 0          # the engine can only get metrics from Prometheus

    repo = _deploy_repo(tmp_path / "deploy-repo")
    with replay_case_metrics(DEMO) as prom:
        app.state.put_source(space, "prom", "prometheus", prom.source_config())
        app.state.put_source(space, "deploys", "git", {"path": str(repo), "services": {
            "services/ts-preserve-service/**": "ts-preserve-service",
            "services/ts-food-service/**": "ts-food-service"}})
        app.state.put_source(space, "git-mcp", "mcp", {
            "transport": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)],
            "timeout_s": 30, "variables": {"repo_path": str(repo)},
            "agent_tools": [{"tool": "git_log", "arguments": {"repo_path": "{repo_path}", "max_count": 5}}],
            "agent_top": 1, "max_output_chars": 2000})
        app.sources.invalidate(space)
        inv, analysis = app.investigate(space, latest=True)

    hyps = analysis.hypotheses
    assert hyps[0].resource == "ts-preserve-service", [h.resource for h in hyps[:5]]
    assert hyps[0].fault_kind.value == "cpu"

    journal = app.state.journal(inv.id)
    metric_queries = [e for e in journal if e.kind == JournalKind.QUERY and e.message.startswith("queried metrics")]
    assert metric_queries, "no metrics query journaled"
    by_source = metric_queries[0].data["rows_by_source"]
    assert by_source["embedded"] == 0 and by_source["prom"] > 1000, by_source

    change_queries = [e for e in journal if e.kind == JournalKind.QUERY and e.message.startswith("queried changes")]
    assert change_queries and change_queries[0].data["rows_by_source"].get("deploys", 0) >= 1
    food = next((h for h in hyps if h.resource == "ts-food-service"), None)
    assert food is not None and any(ev.kind.value == "change" for ev in food.evidence), \
        "the Git change did not reach the engine"

    mcp_calls = [e for e in journal if e.source == "mcp:git-mcp"]
    assert mcp_calls, "no MCP tool call journaled"
    assert any("cache_ttl_s" in str(e.data) or "ts-food-service: update settings" in str(e.data) for e in mcp_calls)
    assert not [e for e in journal if e.kind == JournalKind.WARNING and "partial evidence" in e.message], \
        [e.message for e in journal if e.kind == JournalKind.WARNING]
