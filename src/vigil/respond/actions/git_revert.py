"""``git-revert``: revert a commit on a new branch of a local clone and write the pull request's text.

The revert is made in a temporary worktree (the clone's own checkout is never touched) off the
configured base; a conflict aborts it and leaves nothing behind. The branch then holds one commit
``Revert "<subject>"``; pushing it and opening the pull request is the pipeline's (or a person's) step,
with the title and body Vigil wrote (the investigation, the cause, the approver)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from vigil.respond.actions.base import (
    Action,
    ActionArgs,
    ActionConfig,
    ActionContext,
    ActionError,
    ActionResult,
)

SHA = r"^[0-9a-f]{7,40}$"


def _branch(v: str) -> str:
    from vigil.respond.commands import Unsafe, git_ref
    if v == "HEAD":
        return v
    try:
        return git_ref(v)
    except Unsafe as exc:
        raise ValueError(str(exc)) from None


class Config(ActionConfig):
    path: str = Field(min_length=1, max_length=1000, description="A local clone of the repository.")
    base: str = Field(default="HEAD", description="What the revert branch starts from.")
    author_name: str = Field(default="Vigil", max_length=100)
    author_email: str = Field(default="vigil@localhost", max_length=200)

    _base = field_validator("base")(classmethod(lambda cls, v: _branch(v)))


class Args(ActionArgs):
    sha: str = Field(pattern=SHA)
    branch: str

    _branch = field_validator("branch")(classmethod(lambda cls, v: _branch(v)))


class GitRevert(Action):
    kind: ClassVar[str] = "git-revert"
    title: ClassVar[str] = "Git revert on a branch"
    Args = Args
    Config = Config

    def describe(self, args: Args) -> str:
        return f"revert commit {args.sha[:10]} on branch {args.branch}"

    def guard(self) -> None:
        from vigil.sources import registry
        registry.guard_host_access("git", {"path": self.config.path})

    def _git(self, repo, *args: str, cwd: str | None = None) -> str:
        import git
        try:
            where = ["-C", cwd] if cwd else []
            return repo.git.execute(["git", *where, "-c", f"user.name={self.config.author_name}", "-c",
                                     f"user.email={self.config.author_email}", *args],
                                    kill_after_timeout=self.config.timeout_s)
        except git.GitCommandError as exc:
            err = str(exc.stderr or "").strip().removeprefix("stderr:").strip().strip("'")
            raise ActionError(f"git {args[0]} failed: {(err.splitlines() or ['exit ' + str(exc.status)])[0][:200]}") \
                from None

    def run(self, args: Args, ctx: ActionContext) -> ActionResult:
        import git
        try:
            repo = git.Repo(self.config.path)
        except (git.NoSuchPathError, git.InvalidGitRepositoryError):
            raise ActionError(f"{self.config.path} is not a git repository") from None
        try:
            subject = self._git(repo, "log", "-1", "--format=%s", args.sha, "--").strip()
            exists = self._git(repo, "branch", "--list", args.branch).strip()
            if exists:
                raise ActionError(f"branch {args.branch} already exists")
            with tempfile.TemporaryDirectory(prefix="vigil-revert-") as tmp:
                wt = str(Path(tmp) / "wt")
                self._git(repo, "worktree", "add", "-q", "-b", args.branch, wt, self.config.base)
                try:
                    try:
                        self._git(repo, "revert", "--no-edit", args.sha, cwd=wt)
                    except ActionError:
                        self._git(repo, "revert", "--abort", cwd=wt)
                        raise
                    commit = self._git(repo, "rev-parse", "HEAD", cwd=wt).strip()
                except ActionError as exc:
                    self._git(repo, "worktree", "remove", "--force", wt)
                    self._git(repo, "branch", "-D", args.branch)
                    raise ActionError(f"cannot revert {args.sha[:10]} cleanly on {self.config.base}: {exc}") from None
                self._git(repo, "worktree", "remove", "--force", wt)
        finally:
            repo.close()
        title = f"Revert \"{subject[:150]}\""
        body = (f"Reverts {args.sha}.\n\nVigil investigation {ctx.investigation_id} in space {ctx.space} named this "
                f"commit as the cause of the incident" + (f":\n\n> {ctx.cause}\n" if ctx.cause else ".\n")
                + f"\nApproved by {ctx.approved_by} (action {ctx.action_id}).\n")
        return ActionResult(ok=True, message=f"reverted {args.sha[:10]} on branch {args.branch} ({commit[:10]})",
                            detail={"branch": args.branch, "commit": commit,
                                    "pull_request": {"title": title, "head": args.branch, "base": self.config.base,
                                                     "body": body}})
