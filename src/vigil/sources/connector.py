"""The connector contract: one class per backend (Prometheus, CloudWatch, Loki, Git, ...), configured
per Agent Space, serving some of the roles of ``TelemetrySource`` for that one space.

A connector is built from a stored ``(name, kind, config)`` row by ``build``; its ``Config`` model
validates the row (a bad row is a one-line ``InputError``). Credentials are never in the row: a config
holds ``SecretRef``s (an environment variable or a file) that are read when the connector is built,
never logged and never returned by the API. Everything a connector fetches is untrusted data.

Connector modules are imported lazily (``KINDS`` maps a kind to its class) so that a space without
CloudWatch never imports boto3."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vigil.errors import InputError, VigilError
from vigil.model import Alert, Topology
from vigil.sources.base import FRAME_COLUMNS
from vigil.sources.safety import check_url

ROLES = frozenset({"metrics", "logs", "spans", "changes", "topology", "alerts"})

# kind -> "module:Class". A kind listed here whose module is missing is reported as unknown.
KINDS: dict[str, str] = {
    "prometheus": "vigil.sources.prometheus:PrometheusConnector",
    "cloudwatch": "vigil.sources.cloudwatch:CloudWatchConnector",
    "loki": "vigil.sources.loki:LokiConnector",
    "tempo": "vigil.sources.tempo:TempoConnector",
    "jaeger": "vigil.sources.jaeger:JaegerConnector",
    "opensearch": "vigil.sources.opensearch:OpenSearchConnector",
    "datadog": "vigil.sources.datadog:DatadogConnector",
    "kubernetes": "vigil.sources.kubernetes:KubernetesConnector",
    "git": "vigil.sources.git:GitConnector",
    "argocd": "vigil.sources.argocd:ArgoCDConnector",
    "mcp": "vigil.sources.mcp:McpConnector",
}


class SourceError(VigilError):
    """A backend could not be reached or answered badly. The message is one line and holds no secret."""


class SecretRef(BaseModel):
    """Where a credential lives: an environment variable or a file (e.g. a mounted Kubernetes secret)."""

    model_config = ConfigDict(extra="forbid")
    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    file: str | None = Field(default=None, min_length=1, max_length=1000)

    def model_post_init(self, _ctx: Any) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret is either {env: NAME} or {file: PATH}")

    def value(self) -> str:
        import os
        if self.env is not None:
            val = os.environ.get(self.env)
            if val is None:
                raise SourceError(f"the environment variable {self.env} is not set")
            return val
        try:
            with open(self.file, encoding="utf-8") as fh:   # type: ignore[arg-type]
                return fh.read().strip()
        except OSError as exc:
            raise SourceError(f"cannot read the secret file {self.file}: {exc.strerror}") from None


class ConnectorConfig(BaseModel):
    """Settings every connector has."""

    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per outbound call.")


class HttpConfig(ConnectorConfig):
    """A connector that talks HTTP to one base URL."""

    url: str = Field(min_length=1, max_length=2000)
    token: SecretRef | None = Field(default=None, description="Sent as a bearer token.")
    allow_link_local: bool = Field(default=False, description="Allow link-local and cloud metadata addresses.")
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("the url must start with http:// or https://")
        return v.rstrip("/")

    def model_post_init(self, _ctx: Any) -> None:
        check_url(self.url, allow_link_local=self.allow_link_local)


def empty(kind: str) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in FRAME_COLUMNS[kind]})


class Connector:
    """Base class. Subclasses set ``kind``, ``Config`` and ``roles`` and override the roles they serve.
    Times are epoch seconds (UTC); frames carry the columns in ``FRAME_COLUMNS``."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    roles: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, config: ConnectorConfig) -> None:
        self.name = name
        self.config = config

    @property
    def timeout_s(self) -> float:
        return self.config.timeout_s

    def check(self) -> str:
        """Reach the backend once; return one line saying what answered, or raise ``SourceError``."""
        raise NotImplementedError

    def metrics(self, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        return empty("metrics")

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        return empty("logs")

    def spans(self, start: float, end: float) -> pd.DataFrame:
        return empty("spans")

    def changes(self, start: float, end: float) -> pd.DataFrame:
        return empty("changes")

    def topology(self) -> Topology:
        return Topology()

    def alerts(self) -> list[Alert]:
        return []

    def close(self) -> None:
        return None


def connector_class(kind: str) -> type[Connector]:
    target = KINDS.get(kind)
    if target is None:
        raise InputError(f"unknown source kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    mod, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError):
        raise InputError(f"source kind {kind!r} is not available in this build") from None


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "config"
    return f"{where}: {err.get('msg', 'invalid')}".replace("Value error, ", "")


def validate_config(kind: str, config: dict[str, Any]) -> ConnectorConfig:
    """The typed config of a stored row; a bad one is a one-line ``InputError``."""
    cls = connector_class(kind)
    try:
        return cls.Config.model_validate(config or {})
    except ValidationError as exc:
        raise InputError(f"bad {kind} source config: {first_error(exc)}") from None


def build(name: str, kind: str, config: dict[str, Any]) -> Connector:
    return connector_class(kind)(name, validate_config(kind, config))


Factory = Callable[[str, str, dict[str, Any]], Connector]
