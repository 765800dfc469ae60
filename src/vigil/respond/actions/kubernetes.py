"""Shared by the Kubernetes actions: the cluster client (the connector's, so every connection's address
is vetted and failures are one line) and the config (the connector's, plus the namespaces actions may
touch)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from vigil.errors import InputError
from vigil.respond.actions.base import ActionArgs, ActionConfig, ActionError
from vigil.sources.connector import SourceError
from vigil.sources.kubernetes import KubernetesConfig, KubernetesConnector

NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class K8sActionConfig(ActionConfig):
    cluster: dict[str, Any] = Field(description="How to reach the cluster: a `kubernetes` source's config "
                                                "(api_url + token, or kubeconfig).")
    namespaces: list[str] = Field(default_factory=list, max_length=50,
                                  description="Namespaces actions may change; empty: any.")

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, v: dict[str, Any]) -> dict[str, Any]:
        KubernetesConfig.model_validate(v)
        return v

    @field_validator("namespaces")
    @classmethod
    def _ns(cls, v: list[str]) -> list[str]:
        for ns in v:
            if not re.fullmatch(NAME, ns):
                raise ValueError(f"{ns[:70]!r} is not a namespace name")
        return v


class DeploymentArgs(ActionArgs):
    namespace: str = Field(default="default", pattern=NAME)
    deployment: str = Field(pattern=NAME)


def guard(config: K8sActionConfig) -> None:
    from vigil.sources import registry
    registry.guard_host_access("kubernetes", config.cluster)


def check_namespace(config: K8sActionConfig, args: DeploymentArgs) -> None:
    if config.namespaces and args.namespace not in config.namespaces:
        raise InputError(f"namespace {args.namespace!r} is not one this space's actions may change "
                         f"({', '.join(config.namespaces)})")


def apps(config: K8sActionConfig):
    """(AppsV1Api, the connector) for the configured cluster."""
    from kubernetes import client
    conn = KubernetesConnector("action", KubernetesConfig.model_validate({**config.cluster,
                                                                          "timeout_s": config.timeout_s}))
    try:
        api = conn._client()
    except SourceError as exc:
        raise ActionError(str(exc)) from None
    return client.AppsV1Api(api), conn


def call(conn: KubernetesConnector, fn, what: str, **kw):
    try:
        return conn._call(fn, what, **kw)
    except SourceError as exc:
        raise ActionError(str(exc)) from None
