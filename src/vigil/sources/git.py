"""Git as a change source: the commits that landed on a branch of a local repository (a deploy repo, a
GitOps repo, a monorepo) become change events on the services whose files they touched.

Read-only: Vigil runs ``git log`` on the path it is given and never fetches, pulls or writes. Keep the
clone fresh yourself (a cron ``git fetch``, or the checkout your CD tool already maintains).

Which service a commit changed (first that applies):

1. ``services``: path globs -> service, e.g. ``{"services/cart/**": "cart", "deploy/cart.yaml": "cart"}``.
   Each changed file goes to the first glob that matches it (in the order written); a commit touching
   two services' files is one change on each.
2. The commit message, when no file matched (``message_convention``, on by default):
   ``[cart] raise the pool size``, ``cart: raise the pool size`` or the Conventional Commits scope
   ``fix(cart): raise the pool size``. ``fix:``, ``feat:`` and the other Conventional Commits types are
   not taken for services.

Otherwise the commit is not a change of any known service and is skipped.

Its kind: ``deploy`` if one of the service's files matches ``deploy_paths`` (manifests, charts,
Dockerfiles, ...), else ``config`` if one matches ``config_paths``, else ``code``. Globs: ``*`` and
``?`` stay within a path segment, ``**`` spans segments, and a glob without ``/`` matches the file name
at any depth (``*.conf``).

When: the committer time, i.e. when the commit landed on the branch (for a merge, when it was merged;
history is read along first parents, a merge counting with everything it brought in)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field, field_validator

from vigil.sources.connector import Connector, ConnectorConfig, SourceError, empty

DEFAULT_DEPLOY = [
    "**/deploy/**", "**/deployment/**", "**/deployments/**", "**/k8s/**", "**/kubernetes/**", "**/manifests/**",
    "**/helm/**", "**/charts/**", "**/kustomize/**", "**/argocd/**", "Chart.yaml", "kustomization.yaml",
    "values*.yaml", "Dockerfile", "*.Dockerfile", "docker-compose*.yml", "docker-compose*.yaml", "*.tf",
    ".github/workflows/**", ".gitlab-ci.yml"]
DEFAULT_CONFIG = [
    "**/config/**", "**/configs/**", "**/conf/**", "etc/**", "*.conf", "*.cfg", "*.ini", "*.properties", "*.env",
    ".env*", "settings.*", "config.*", "application*.yml", "application*.yaml"]
CONVENTIONAL_TYPES = frozenset({"feat", "fix", "chore", "docs", "style", "refactor", "perf", "test", "tests", "build",
                                "ci", "revert", "wip", "merge", "release", "deps", "bump", "hotfix"})
_REF = re.compile(r"^(?!-)[A-Za-z0-9._/+@-]{1,200}$")
_SERVICE = r"([A-Za-z0-9][A-Za-z0-9_.-]{0,99})"
_MSG = (re.compile(r"^\[" + _SERVICE + r"\]"), re.compile(r"^[a-z]+\(" + _SERVICE + r"\)!?:"),
        re.compile(r"^" + _SERVICE + r":\s"))
RS, US = "\x1e", "\x1f"


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex (see the module doc for the rules)."""
    p = pattern.strip().lstrip("/")
    out = "" if "/" in p.rstrip("/") else "(?:.*/)?"
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    if p.endswith("/"):
        out += ".*"
    return re.compile(out + r"\Z")


def matches(path: str, globs: list[str]) -> bool:
    return any(glob_regex(g).match(path) for g in globs)


def service_from_message(subject: str) -> str | None:
    s = subject.strip()
    for i, rx in enumerate(_MSG):
        m = rx.match(s)
        if m and not (i == 2 and m.group(1).lower() in CONVENTIONAL_TYPES):
            return m.group(1)
    return None


class GitConfig(ConnectorConfig):
    path: str = Field(min_length=1, max_length=1000, description="A local clone (working tree or bare).")
    branch: str | None = Field(default=None, description="The branch (or ref) to read; default the checked-out HEAD.")
    services: dict[str, str] = Field(default_factory=dict, max_length=1000,
                                     description="Path glob -> service; the first glob that matches a file wins.")
    message_convention: bool = Field(default=True, description="Take '[svc]', 'svc:' or 'type(svc):' prefixes.")
    deploy_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_DEPLOY), max_length=500)
    config_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_CONFIG), max_length=500)
    max_commits: int = Field(default=5000, ge=1, le=100_000, description="At most this many commits per query.")

    @field_validator("branch")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        if v is not None and (not _REF.match(v) or ".." in v):
            raise ValueError("branch must be a branch, tag or ref name")
        return v

    @field_validator("services")
    @classmethod
    def _services(cls, v: dict[str, str]) -> dict[str, str]:
        for glob, svc in v.items():
            if not glob.strip() or not str(svc).strip():
                raise ValueError("services maps non-empty path globs to non-empty service names")
        return v


DIFF_CHARS = 4000
_KEY_LINE = re.compile(r"""^\s*(?:-\s*name:\s*["']?([A-Za-z_][\w.-]*)["']?\s*$|(?:export\s+)?([A-Za-z_][\w.-]*)\s*=|"""
                       r"""["']?([A-Za-z_][\w.-]*)["']?\s*:(?:\s|$))""")


class GitConnector(Connector):
    kind: ClassVar[str] = "git"
    Config = GitConfig
    roles: ClassVar[frozenset[str]] = frozenset({"changes"})
    config: GitConfig

    def _repo(self):
        import git
        try:
            return git.Repo(self.config.path)
        except git.NoSuchPathError:
            raise SourceError(f"no such path {self.config.path}") from None
        except git.InvalidGitRepositoryError:
            raise SourceError(f"{self.config.path} is not a git repository") from None

    def _git(self, repo, *args: str) -> str:
        import git
        try:
            return repo.git.execute(["git", "-c", "core.quotePath=false", *args],
                                    kill_after_timeout=self.config.timeout_s, with_extended_output=False,
                                    strip_newline_in_stdout=False)
        except git.GitCommandError as exc:
            err = str(exc.stderr or "").strip().removeprefix("stderr:").strip()
            if len(err) > 1 and err[0] == err[-1] == "'":
                err = err[1:-1].strip()
            line = (err.splitlines() or [f"exit status {exc.status}"])[0]
            raise SourceError(f"git {args[0]} in {self.config.path} failed: {line[:200]}") from None

    def check(self) -> str:
        repo = self._repo()
        try:
            rev = self.config.branch or "HEAD"
            out = self._git(repo, "log", "-1", f"--format=%H{US}%ct{US}%s", rev, "--").strip()
            if not out:
                raise SourceError(f"{rev} of {self.config.path} has no commits")
            sha, ct, subject = (out.split(US) + ["", ""])[:3]
            when = datetime.fromtimestamp(int(ct), UTC)
            return (f"git repository {self.config.path}: {rev} at {sha[:10]} ({when:%Y-%m-%d %H:%M}Z) "
                    f"{subject[:80]}")
        finally:
            repo.close()

    def commits(self, start: float, end: float) -> list[dict[str, Any]]:
        """Commits that landed in [start, end): sha, ts, author, subject, files."""
        repo = self._repo()
        try:
            since = datetime.fromtimestamp(start - 1, UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
            until = datetime.fromtimestamp(end + 1, UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
            out = self._git(repo, "log", self.config.branch or "HEAD", "--first-parent", "-m", "--name-only",
                            f"--since={since}", f"--until={until}", f"--max-count={self.config.max_commits}",
                            f"--format={RS}%H{US}%ct{US}%an{US}%s", "--")
        finally:
            repo.close()
        commits = []
        for rec in out.split(RS):
            if not rec.strip():
                continue
            head, _, rest = rec.partition("\n")
            parts = head.split(US)
            if len(parts) < 4:
                continue
            ts = float(parts[1])
            if not start <= ts < end:
                continue
            commits.append({"sha": parts[0], "ts": ts, "author": parts[2], "subject": US.join(parts[3:]),
                            "files": [f for f in rest.splitlines() if f.strip()]})
        return commits

    def changes_of(self, commit: dict[str, Any]) -> list[dict[str, Any]]:
        """The change rows of one commit (one per service it touched; none if no service is known)."""
        cfg = self.config
        by_service: dict[str, list[str]] = {}
        for f in commit["files"]:
            svc = next((s for g, s in cfg.services.items() if glob_regex(g).match(f)), None)
            if svc:
                by_service.setdefault(svc, []).append(f)
        if not by_service and cfg.message_convention:
            svc = service_from_message(commit["subject"])
            if svc:
                by_service[svc] = list(commit["files"])
        rows = []
        for svc, files in by_service.items():
            kind = ("deploy" if any(matches(f, cfg.deploy_paths) for f in files) else
                    "config" if any(matches(f, cfg.config_paths) for f in files) else "code")
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            desc = f"commit {commit['sha'][:10]} {commit['subject'][:200]}" + (f" ({shown})" if shown else "")
            detail: dict[str, Any] = {"source": "git", "sha": commit["sha"], "files": files[:20]}
            if kind in ("deploy", "config"):
                diff = self.diff(commit["sha"], files[:20])
                if diff:
                    detail["diff"] = diff[:DIFF_CHARS]
                    detail["keys"] = changed_keys(diff)
            rows.append({"resource": svc, "ts": commit["ts"], "kind": kind, "description": desc[:500],
                         "author": commit["author"][:100], "detail": json.dumps(detail, sort_keys=True)})
        return rows

    def diff(self, sha: str, files: list[str]) -> str:
        """The commit's diff of ``files`` (no context lines), bounded; empty when git cannot say."""
        try:
            repo = self._repo()
        except SourceError:
            return ""
        try:
            out = self._git(repo, "show", "--format=", "--unified=0", "--no-color", "--no-ext-diff", sha, "--",
                            *files)
        except SourceError:
            return ""
        finally:
            repo.close()
        return "\n".join(line for line in out.splitlines() if not line.startswith(("index ", "diff --git")))

    def changes(self, start: float, end: float) -> pd.DataFrame:
        rows = [r for c in self.commits(start, end) for r in self.changes_of(c)]
        if not rows:
            return empty("changes")
        return pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)


def changed_keys(diff: str) -> list[str]:
    """Configuration keys a diff adds, removes or changes: ``KEY=value`` (env files), ``key: value``
    (YAML) and ``"key": value`` (JSON) on added or removed lines, and Kubernetes ``- name: KEY`` env
    entries."""
    keys: list[str] = []
    for line in diff.splitlines():
        if not line or line[0] not in "+-" or line.startswith(("+++", "---")):
            continue
        m = _KEY_LINE.match(line[1:])
        if m:
            key = next(g for g in m.groups() if g)
            if key not in keys and key not in ("name", "value"):
                keys.append(key)
    return keys[:50]
