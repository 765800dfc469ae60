"""``vigil space apply FILE.yaml`` and ``vigil space sources SPACE`` as a user runs them (subprocesses):
a space and its sources from YAML, validated and checked against real git repositories, all-or-nothing
(one bad source and nothing is stored: one-line error, exit 2), ``--no-check``, updates and ``--prune``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.errors import InputError, NotFound
from vigil.sources import spacefile
from vigil.store.state import StateStore


def vigil(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_HOME": str(home), "COLUMNS": "400"}   # wide enough for the longer tmp paths of xdist workers
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    return lines[0]


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2024-05-01T12:00:00Z", "GIT_COMMITTER_DATE": "2024-05-01T12:00:00Z",
           "GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "Ann",
           "GIT_COMMITTER_EMAIL": "a@example.com"}
    (path / "app.py").write_text("print('hi')\n")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "cart: first version"]):
        subprocess.run(["git", *cmd], cwd=path, env=env, check=True)
    return path


def sources(home: Path, space: str) -> dict[str, dict]:
    st = StateStore(f"sqlite:///{home / 'state.db'}")
    try:
        return {s["name"]: s for s in st.list_sources(space)}
    finally:
        st.close()


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def test_apply_creates_the_space_and_its_checked_sources(tmp_path, home):
    repo = git_repo(tmp_path / "shop-deploy")
    f = tmp_path / "shop.yaml"
    f.write_text(f"""
space: shop
description: the web shop
sources:
  - name: repo
    kind: git
    config: {{path: {repo}, branch: main, services: {{"services/cart/**": cart}}}}
  - name: otel
    kind: otlp
    config: {{resource_attribute: k8s.deployment.name}}
""")
    p = vigil("space", "apply", str(f), home=home)
    assert p.returncode == 0, p.stderr
    assert "space shop created; 2 source(s) stored" in p.stdout
    assert f"repo (git): git repository {repo}: main at " in p.stdout
    got = sources(home, "shop")
    assert got["repo"]["config"] == {"path": str(repo), "branch": "main", "services": {"services/cart/**": "cart"}}
    assert got["repo"]["last_check"]["ok"] is True and "cart: first version" in got["repo"]["last_check"]["message"]
    assert got["otel"]["config"] == {"resource_attribute": "k8s.deployment.name"}

    p = vigil("space", "sources", "shop", home=home)
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if " repo " in ln)
    assert "git" in line and "yes" in line and "main at" in line

    # re-applying updates in place; --prune removes what the file no longer lists
    f.write_text(f"space: shop\nsources:\n  - name: repo\n    kind: git\n    config: {{path: {repo}}}\n")
    p = vigil("space", "apply", str(f), "--prune", home=home)
    assert p.returncode == 0, p.stderr
    assert "space shop updated; 1 source(s) stored, 1 removed" in p.stdout
    got = sources(home, "shop")
    assert set(got) == {"repo"} and got["repo"]["config"] == {"path": str(repo)}
    st = StateStore(f"sqlite:///{home / 'state.db'}")
    assert st.get_space("shop").description == "the web shop"          # kept: the file no longer says
    st.close()


def test_apply_is_all_or_nothing(tmp_path, home):
    repo = git_repo(tmp_path / "good")
    missing = tmp_path / "missing"
    f = tmp_path / "s.yaml"
    f.write_text(f"""
space: shop
sources:
  - {{name: repo, kind: git, config: {{path: {repo}}}}}
  - {{name: broken, kind: git, config: {{path: {missing}}}}}
""")
    err = one_line_error(vigil("space", "apply", str(f), home=home))
    assert err == f"error: source 'broken' (git) failed its check: git source 'broken': no such path {missing}; " \
                  "nothing was stored"
    # nothing: not even the space
    st = StateStore(f"sqlite:///{home / 'state.db'}")
    assert st.list_spaces() == []
    st.close()

    # --no-check stores both (the broken one is reported when it is used or checked)
    p = vigil("space", "apply", str(f), "--no-check", home=home)
    assert p.returncode == 0, p.stderr
    assert "broken (git): not checked" in p.stdout
    got = sources(home, "shop")
    assert set(got) == {"repo", "broken"} and got["broken"]["last_check"] is None
    p = vigil("space", "sources", "shop", home=home)
    assert "never" in next(ln for ln in p.stdout.splitlines() if " broken " in ln)


@pytest.mark.parametrize("text, expect", [
    ("space: shop\nsources:\n  - {name: x, kind: nosuch, config: {}}\n", "unknown source kind 'nosuch'"),
    ("space: shop\nsources:\n  - {name: x, kind: git, config: {path: /tmp, extra: 1}}\n",
     "source 'x': bad git source config: extra: Extra inputs are not permitted"),
    ("space: shop\nsources:\n  - {name: x, kind: git, config: {path: /a}}\n  - {name: x, kind: git, "
     "config: {path: /b}}\n", "source 'x' is listed more than once"),
    ("space: Shop!\n", "space: String should match pattern"),
    ("space: shop\nsources: [\n", "is not valid YAML at line"),
    ("- just a list\n", "must hold a mapping"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, expect):
    """In process (the command line's exit code and message format are checked once, below)."""
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    st = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with pytest.raises(InputError) as exc:
            spacefile.apply(st, spacefile.load(f))
        assert expect in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
        assert st.list_spaces() == []
    finally:
        st.close()


def test_a_bad_file_on_the_command_line(tmp_path, home):
    f = tmp_path / "bad.yaml"
    f.write_text("space: shop\nsources:\n  - {name: x, kind: nosuch, config: {}}\n")
    err = one_line_error(vigil("space", "apply", str(f), home=home))
    assert err.startswith("error: source 'x': unknown source kind 'nosuch'; known: ")


def test_the_last_check_is_kept_on_sqlite_and_postgresql(database_url):
    """Migration 0003 and the StateStore source methods on both state databases."""
    from vigil.model import AgentSpace
    st = StateStore(database_url)
    try:
        st.put_space(AgentSpace(id="shop"))
        st.put_sources("shop", [("a", "git", {"path": "/x"}, (True, "git repository /x: main at 123")),
                                ("b", "otlp", {}, None)])
        got = {s["name"]: s for s in st.list_sources("shop")}
        assert got["a"]["last_check"]["ok"] is True and got["a"]["last_check"]["message"].endswith("main at 123")
        assert got["a"]["last_check"]["at"].tzinfo is not None and got["b"]["last_check"] is None
        st.record_source_check("shop", "b", False, "down")
        assert st.get_source("shop", "b")["last_check"]["ok"] is False
        st.put_sources("shop", [("a", "git", {"path": "/y"}, None)], prune=True)   # a new config: no old check
        assert [(s["name"], s["config"], s["last_check"]) for s in st.list_sources("shop")] == [
            ("a", {"path": "/y"}, None)]
        with pytest.raises(NotFound):
            st.record_source_check("shop", "b", True, "x")
    finally:
        st.close()
