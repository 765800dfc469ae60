"""Registering a source for a space: validate its config, check that its backend answers, and keep
credentials out of everything said about it. The API (``PUT .../sources/{name}``, ``.../check``) and
the CLI (``vigil space apply``) share these functions, so a source is accepted by the same rules
whichever way it arrives.

A stored config holds only ``SecretRef``s (an environment variable or a file); the secret values are
read when a connector is built. Messages from a check come from the backend (an error page, an
exception): they are reduced to one line and every secret value the config refers to is masked in
them before anyone sees them, in case a backend echoes the credential back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.errors import InputError
from vigil.hostaccess import HostAccess, check_secret_env, check_secret_file, under  # noqa: F401  (re-exported)
from vigil.sources.connector import KINDS, SecretRef, first_error, validate_config

OTLP = "otlp"
MASK = "***"


class OtlpConfig(BaseModel):
    """The ``otlp`` kind configures the embedded store's OTLP intake (nothing to reach)."""

    model_config = ConfigDict(extra="forbid")
    resource_attribute: str = Field(default="service.name", min_length=1, max_length=200,
                                    pattern=r"^[A-Za-z0-9_.\-/]+$",
                                    description="The OTLP resource attribute that names a resource.")


def kinds() -> list[str]:
    return sorted([*KINDS, OTLP])


def parse(kind: str, config: dict[str, Any] | None) -> BaseModel:
    """The typed config of ``kind``; a bad one is a one-line ``InputError``."""
    if not isinstance(config, dict):
        raise InputError(f"the config of a {kind} source must be a mapping")
    if kind == OTLP:
        try:
            return OtlpConfig.model_validate(config)
        except ValidationError as exc:
            raise InputError(f"bad otlp source config: {first_error(exc)}") from None
    return validate_config(kind, config)


def normalize(kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """What is stored for a source: the validated config without its defaults (so a later default
    change reaches it), as JSON-able data. Secrets stay references."""
    return parse(kind, config).model_dump(mode="json", exclude_defaults=True)


def secret_refs(obj: Any) -> list[SecretRef]:
    """Every ``SecretRef`` inside a parsed config (nested models, lists and dicts included)."""
    found: list[SecretRef] = []

    def walk(o: Any) -> None:
        if isinstance(o, SecretRef):
            found.append(o)
        elif isinstance(o, BaseModel):
            for name in type(o).model_fields:
                walk(getattr(o, name, None))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list | tuple | set):
            for v in o:
                walk(v)

    walk(obj)
    return found


def scrub(text: str, model: Any) -> str:
    """``text`` on one line with every secret value ``model`` refers to masked."""
    line = " ".join(str(text).split())
    for ref in secret_refs(model):
        try:
            val = ref.value()
        except Exception:       # noqa: BLE001 - an unreadable secret cannot leak
            continue
        for v in {val, val.strip()}:
            if len(v) >= 4:
                line = line.replace(v, MASK)
    return line[:500]


@dataclass
class CheckResult:
    ok: bool
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ok": self.ok, "message": self.message}


def check(name: str, kind: str, config: dict[str, Any], grace_s: float = 2.0) -> CheckResult:
    """Build the connector and reach its backend once, bounded by its timeout (plus ``grace_s``:
    a connector that ignores its own timeout does not hold the caller). Never raises for a backend
    problem: the result says what happened, on one line, without secrets."""
    if kind == OTLP:
        parse(kind, config)
        return CheckResult(True, "otlp: telemetry is pushed to the embedded store; nothing to reach")
    model = parse(kind, config)
    from vigil.sources.connector import connector_class
    try:
        conn = connector_class(kind)(name, model)
    except Exception as exc:   # noqa: BLE001 - e.g. a secret that cannot be read
        return CheckResult(False, scrub(f"{kind} source {name!r} cannot be built: {_line(exc)}", model))
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["ok"] = conn.check()
        except Exception as exc:    # noqa: BLE001 - reported, not raised
            box["err"] = exc

    th = threading.Thread(target=run, name=f"vigil-check-{name}", daemon=True)
    th.start()
    th.join(float(getattr(model, "timeout_s", 10.0)) + grace_s)
    try:
        if th.is_alive():
            return CheckResult(False, f"{kind} source {name!r} did not answer within "
                                      f"{float(getattr(model, 'timeout_s', 10.0)):g} s")
        if "err" in box:
            return CheckResult(False, scrub(f"{kind} source {name!r}: {_line(box['err'])}", model))
        return CheckResult(True, scrub(str(box.get("ok") or f"{kind} source {name!r} answered"), model))
    finally:
        if not th.is_alive():
            try:
                conn.close()
            except Exception:    # noqa: BLE001 - closing is best effort
                pass


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def guard_host_access(kind: str, config: dict[str, Any], access: HostAccess | None = None) -> None:
    """Refuse (one-line ``InputError``) a config registered over the API that would reach the Vigil
    host beyond what its operator allowed: secret references outside the allowed environment-variable
    prefixes (``VIGIL_SECRET_ENV_PREFIXES``, default ``VIGIL_SECRET_``) or directories
    (``VIGIL_SECRET_DIRS``), local paths (git repositories, kubeconfigs) outside ``VIGIL_SOURCE_DIRS``,
    MCP stdio commands not listed in ``VIGIL_MCP_COMMANDS``, and the host's ambient cloud or cluster
    credentials unless ``VIGIL_ALLOW_AMBIENT_CREDENTIALS`` is set."""
    a = access or HostAccess.from_env()
    if kind == OTLP:
        return
    model = parse(kind, config)
    for ref in secret_refs(model):
        if ref.env is not None:
            check_secret_env(ref.env, access=a)
        if ref.file is not None:
            check_secret_file(ref.file, a)

    def local(path: str | None, what: str) -> None:
        if path is not None and not under(path, a.source_dirs):
            raise InputError(f"{what} {path!r} is outside the directories spaces may use (VIGIL_SOURCE_DIRS); "
                             "the host's operator can register it with `vigil space apply`")

    if kind == "git":
        local(getattr(model, "path", None), "repository path")
    elif kind == "kubernetes":
        local(getattr(model, "kubeconfig", None), "kubeconfig")
        local(getattr(model, "ca_file", None), "CA file")
        if getattr(model, "kubeconfig", None) is None and getattr(model, "api_url", None) is None \
                and not a.ambient_credentials:
            raise InputError("in-cluster credentials are the host's: give api_url and token, or allow them with "
                             "VIGIL_ALLOW_AMBIENT_CREDENTIALS")
    elif kind == "cloudwatch":
        if getattr(model, "access_key_id", None) is None and not a.ambient_credentials:
            raise InputError("without access_key_id and secret_access_key the host's own AWS credentials would "
                             "be used: give them, or allow that with VIGIL_ALLOW_AMBIENT_CREDENTIALS")
    elif kind == "mcp" and getattr(model, "transport", "") == "stdio":
        command = getattr(model, "command", None)
        if command not in a.mcp_commands:
            raise InputError(f"the stdio command {command!r} is not one spaces may start (VIGIL_MCP_COMMANDS); "
                             "the host's operator can register it with `vigil space apply`")
        local(getattr(model, "cwd", None), "working directory")
        for name in getattr(model, "env", []) or []:
            check_secret_env(name, "environment variable passed to an MCP server", a)
