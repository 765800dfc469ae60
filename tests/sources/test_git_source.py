"""The git change source against a real repository made here, with real commits at chosen dates
(GIT_AUTHOR_DATE / GIT_COMMITTER_DATE), a feature branch merged with --no-ff, path-glob mapping,
the commit-message convention, kinds, windows, branches, the check, and the path through
``SpaceSources`` that investigations use."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from vigil.sources import registry
from vigil.sources.connector import SourceError, build
from vigil.sources.git import service_from_message
from vigil.sources.router import SpaceSources
from vigil.store.state import StateStore
from vigil.store.telemetry import TelemetryStore


def ts(hhmm: str) -> float:
    return datetime.fromisoformat(f"2024-05-01T{hhmm}:00+00:00").timestamp()


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, at: str | None = None, who: str = "Ann") -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": who, "GIT_AUTHOR_EMAIL": f"{who.lower()}@example.com",
               "GIT_COMMITTER_NAME": who, "GIT_COMMITTER_EMAIL": f"{who.lower()}@example.com"}
        if at:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"2024-05-01T{at}:00Z"
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True,
                              text=True).stdout

    def commit(self, at: str, message: str, files: dict[str, str], who: str = "Ann") -> None:
        for name, text in files.items():
            p = self.path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-qm", message, at=at, who=who)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    r = Repo(tmp_path_factory.mktemp("git") / "shop")
    r.commit("10:00", "initial layout", {"services/cart/main.py": "1", "services/payment/main.py": "1",
                                         "README.md": "shop"})
    r.commit("11:00", "[cart] raise the pool size", {"services/cart/config/pool.yaml": "size: 20"}, who="Bob")
    r.commit("12:00", "bump cart image", {"deploy/cart.yaml": "image: cart:1.2"})
    r.commit("12:30", "payment: fix rounding", {"lib/money.py": "round"}, who="Cy")
    r.commit("12:40", "fix: typo in the docs", {"docs/guide.md": "typo"})
    r.commit("12:50", "feat(frontend): new banner", {"web/banner.js": "banner"})
    r.git("checkout", "-q", "-b", "feature")
    r.commit("12:55", "payment: new base image", {"services/payment/Dockerfile": "FROM python:3.11"}, who="Dee")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature", at="13:00")
    return r


SERVICES = {"services/cart/**": "cart", "deploy/cart.yaml": "cart", "services/payment/**": "payment"}


def test_commits_become_changes_on_their_services(repo):
    conn = build("repo", "git", {"path": str(repo.path), "services": SERVICES})
    df = conn.changes(ts("11:00"), ts("13:00"))           # [11:00, 13:00)
    got = [(r.resource, r.ts, r.kind, r.author) for r in df.itertuples()]
    assert got == [
        ("cart", ts("11:00"), "config", "Bob"),          # services/cart/config/** -> config
        ("cart", ts("12:00"), "deploy", "Ann"),          # deploy/cart.yaml -> deploy (mapped explicitly)
        ("payment", ts("12:30"), "code", "Cy"),          # no file mapped: "payment:" prefix
        ("frontend", ts("12:50"), "code", "Ann"),        # Conventional Commits scope; "fix:" is not a service
    ]
    assert df.iloc[1]["description"].endswith("bump cart image (deploy/cart.yaml)")
    assert list(df.columns) == ["resource", "ts", "kind", "description", "author", "detail"]
    # a config or deploy commit carries its diff and the keys it changed
    cfg = json.loads(df.iloc[0]["detail"])
    assert cfg["source"] == "git" and cfg["files"] == ["services/cart/config/pool.yaml"] and cfg["keys"] == ["size"]
    assert "+size: 20" in cfg["diff"] and len(cfg["sha"]) == 40
    assert "diff" not in json.loads(df.iloc[2]["detail"])         # a code commit: files only


def test_a_merge_counts_when_it_lands_with_what_it_brought(repo):
    conn = build("repo", "git", {"path": str(repo.path), "services": SERVICES})
    df = conn.changes(ts("12:51"), ts("13:01"))
    assert [(r.resource, r.ts, r.kind, r.author) for r in df.itertuples()] == [
        ("payment", ts("13:00"), "deploy", "Ann")]      # the Dockerfile, at merge time, not the branch commit's
    assert "Merge branch 'feature'" in df.iloc[0]["description"]
    # reading the feature branch itself shows the branch commit at its own time
    feat = build("repo", "git", {"path": str(repo.path), "services": SERVICES, "branch": "feature"})
    df = feat.changes(ts("12:51"), ts("13:01"))
    assert [(r.resource, r.ts, r.kind, r.author) for r in df.itertuples()] == [("payment", ts("12:55"), "deploy", "Dee")]


def test_the_first_commit_touches_two_services_and_unmapped_files_are_left_out(repo):
    conn = build("repo", "git", {"path": str(repo.path), "services": SERVICES})
    df = conn.changes(ts("09:00"), ts("10:30"))
    assert sorted(df["resource"]) == ["cart", "payment"] and set(df["kind"]) == {"code"}
    # without mapping and without the convention, no commit names a service
    bare = build("repo", "git", {"path": str(repo.path), "message_convention": False})
    assert bare.changes(ts("09:00"), ts("14:00")).empty
    # custom kinds: *.md as config
    docs = build("repo", "git", {"path": str(repo.path), "services": {"docs/**": "docs"}, "config_paths": ["*.md"]})
    assert [(r.resource, r.kind) for r in docs.changes(ts("12:40"), ts("12:41")).itertuples()] == [("docs", "config")]


def test_message_convention():
    assert service_from_message("[cart] x") == "cart"
    assert service_from_message("cart: x") == "cart"
    assert service_from_message("fix(cart)!: x") == "cart"
    assert service_from_message("fix: x") is None and service_from_message("chore: bump") is None
    assert service_from_message("no prefix here") is None


def test_check_and_its_failures(repo, tmp_path):
    conn = build("repo", "git", {"path": str(repo.path), "branch": "main"})
    msg = conn.check()
    assert msg.startswith(f"git repository {repo.path}: main at ") and "(2024-05-01 13:00Z) Merge branch" in msg
    with pytest.raises(SourceError, match="bad revision 'nosuch'"):
        build("repo", "git", {"path": str(repo.path), "branch": "nosuch"}).check()
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="is not a git repository"):
        build("repo", "git", {"path": str(tmp_path / "plain")}).check()
    empty = Repo(tmp_path / "empty")
    res = registry.check("e", "git", {"path": str(empty.path)})
    assert not res.ok and res.message.startswith("git source 'e': git log in ") and "\n" not in res.message


def test_investigations_see_git_changes_through_space_sources(repo, tmp_path):
    st = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    tel = TelemetryStore()
    try:
        from vigil.model import AgentSpace
        st.put_space(AgentSpace(id="shop"))
        st.put_source("shop", "repo", "git", registry.normalize("git", {"path": str(repo.path), "services": SERVICES}))
        sources = SpaceSources(tel, st.list_sources)
        df = sources.changes("shop", ts("11:30"), ts("12:45"))
        assert [(r.resource, r.kind) for r in df.itertuples()] == [("cart", "deploy"), ("payment", "code")]
        assert df.attrs["rows_by_source"] == {"embedded": 0, "repo": 2} and df.attrs["problems"] == []
        sources.close()
    finally:
        tel.close()
        st.close()
