"""What a space admin may reach on the Vigil host, the one rule every layer applies.

A source, integration, notifier or action registered over the API comes from a space's admin, who must
not reach beyond the space: not run programs on the Vigil host, read its files, or send its environment
(other spaces' secrets, cloud keys) to a backend of their choosing. The host's operator opens exactly
what they mean to, through the server's environment. ``vigil space apply`` runs as the host's operator
and is trusted."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vigil.errors import InputError


@dataclass(frozen=True)
class HostAccess:
    secret_env_prefixes: tuple[str, ...] = ("VIGIL_SECRET_",)
    secret_dirs: tuple[str, ...] = ()
    source_dirs: tuple[str, ...] = ()
    mcp_commands: frozenset[str] = frozenset()
    ambient_credentials: bool = False

    @classmethod
    def from_env(cls) -> HostAccess:
        def items(name: str, default: str = "") -> tuple[str, ...]:
            return tuple(x.strip() for x in os.environ.get(name, default).split(",") if x.strip())
        return cls(secret_env_prefixes=items("VIGIL_SECRET_ENV_PREFIXES", "VIGIL_SECRET_"),
                   secret_dirs=items("VIGIL_SECRET_DIRS"), source_dirs=items("VIGIL_SOURCE_DIRS"),
                   mcp_commands=frozenset(items("VIGIL_MCP_COMMANDS")),
                   ambient_credentials=os.environ.get("VIGIL_ALLOW_AMBIENT_CREDENTIALS", "") in ("1", "true", "yes"))

    def env_allowed(self, name: str) -> bool:
        """Whether a space may name the server's environment variable ``name`` (for a secret)."""
        return bool(name) and name.startswith(self.secret_env_prefixes)


def check_secret_env(name: str, what: str = "secret environment variable", access: HostAccess | None = None) -> None:
    """The one rule for every environment variable a space names (a source's ``{env: NAME}``, an MCP
    server's variables, an integration's ``secret_env``): it must start with one of the prefixes the host's
    operator allowed (``VIGIL_SECRET_ENV_PREFIXES``, default ``VIGIL_SECRET_``). Otherwise a space admin
    could learn which variables the server has, or confirm a guessed value, by signing with it.
    A one-line ``InputError`` otherwise."""
    a = access or HostAccess.from_env()
    if not a.env_allowed(name):
        raise InputError(f"{what} {name!r} is not one a space may use: names must start with "
                         f"{' or '.join(a.secret_env_prefixes) or '(none allowed)'} (VIGIL_SECRET_ENV_PREFIXES)")


def under(path: str, dirs: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(real == os.path.realpath(d) or real.startswith(os.path.realpath(d).rstrip("/") + "/") for d in dirs)


def check_secret_file(path: str, access: HostAccess | None = None) -> None:
    """A secret file a space names must lie under a directory the host's operator allowed
    (``VIGIL_SECRET_DIRS``). A one-line ``InputError`` otherwise."""
    a = access or HostAccess.from_env()
    if not under(path, a.secret_dirs):
        raise InputError(f"secret file {path!r} is outside the directories spaces may read secrets from "
                         "(VIGIL_SECRET_DIRS)")
