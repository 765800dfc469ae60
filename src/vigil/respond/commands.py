"""Commands Vigil suggests, built from structured data: an argv list whose every part is validated
for what it is (a Kubernetes name, a label value, a git commit, a replica count) and rendered for a
shell with ``shlex.quote`` on every part.

Names arrive from telemetry (an OTLP ``service.name``, an alert label): untrusted. A name that is not
a valid Kubernetes object name never becomes a command at all (``Unsafe`` is raised and the caller
says "find the deployment by hand"); a valid one is still quoted. Nothing here runs anything."""

from __future__ import annotations

import re
import shlex

from pydantic import BaseModel, Field, computed_field

# Kubernetes object names (DNS-1123 subdomain; deployments, namespaces use the label form) and label
# values, as the API server validates them (k8s.io/apimachinery/pkg/util/validation).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GIT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,252}$")


class Unsafe(ValueError):
    """A value cannot be part of a command (it is not what the argument must be)."""


class Command(BaseModel):
    """One command as an argv list; ``shell`` is its quoted one-line form for a person to paste."""

    argv: list[str] = Field(min_length=1)

    @computed_field      # in the JSON too: what a person pastes
    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


def k8s_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise Unsafe(f"{what} {shown(value)} is not a valid Kubernetes object name")
    return value


def k8s_label_name(value: str, what: str = "name") -> str:
    """Deployments and namespaces: a DNS-1123 label (63 characters at most)."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise Unsafe(f"{what} {shown(value)} is not a valid Kubernetes name")
    return value


def label_value(value: str, what: str = "label value") -> str:
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise Unsafe(f"{what} {shown(value)} is not a valid Kubernetes label value")
    return value


def git_sha(value: str) -> str:
    if not isinstance(value, str) or not _GIT_SHA.match(value):
        raise Unsafe(f"{shown(value)} is not a git commit id")
    return value


def git_ref(value: str) -> str:
    if not isinstance(value, str) or not _GIT_REF.match(value) or value.endswith(".lock"):
        raise Unsafe(f"{shown(value)} is not a valid git branch name")
    return value


def env_key(value: str) -> str:
    if not isinstance(value, str) or not _ENV_KEY.match(value):
        raise Unsafe(f"{shown(value)} is not an environment variable name")
    return value


def count(value: int, lo: int = 0, hi: int = 1000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Unsafe(f"{shown(value)} is not a count between {lo} and {hi}")
    return value


def shown(value: object, limit: int = 60) -> str:
    """A value for an error message: repr'd (quotes, escapes control characters), cut."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "...'"


def _ns(namespace: str | None) -> list[str]:
    return ["-n", k8s_label_name(namespace, "namespace")] if namespace else []


# -- the commands ----------------------------------------------------------------------------------
def kubectl_top(app: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "top", "pod", *_ns(namespace), "-l", f"app={label_value(app, 'app')}"])


def kubectl_pods(app: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "get", "pod", *_ns(namespace), "-l", f"app={label_value(app, 'app')}",
                         "-o", "wide"])


def kubectl_describe_pods(app: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "describe", "pod", *_ns(namespace), "-l", f"app={label_value(app, 'app')}"])


def kubectl_logs(app: str, namespace: str | None = None, since: str = "15m") -> Command:
    return Command(argv=["kubectl", "logs", *_ns(namespace), "-l", f"app={label_value(app, 'app')}",
                         f"--since={since}", "--tail=200"])


def kubectl_rollout_undo(deployment: str, namespace: str | None = None, to_revision: int | None = None) -> Command:
    argv = ["kubectl", "rollout", "undo", f"deployment/{k8s_label_name(deployment, 'deployment')}", *_ns(namespace)]
    if to_revision is not None:
        argv.append(f"--to-revision={count(to_revision, 1, 10**9)}")
    return Command(argv=argv)


def kubectl_rollout_status(deployment: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "rollout", "status", f"deployment/{k8s_label_name(deployment, 'deployment')}",
                         *_ns(namespace), "--timeout=120s"])


def kubectl_rollout_history(deployment: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "rollout", "history", f"deployment/{k8s_label_name(deployment, 'deployment')}",
                         *_ns(namespace)])


def kubectl_rollout_restart(deployment: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "rollout", "restart", f"deployment/{k8s_label_name(deployment, 'deployment')}",
                         *_ns(namespace)])


def kubectl_scale(deployment: str, replicas: int, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "scale", f"deployment/{k8s_label_name(deployment, 'deployment')}",
                         f"--replicas={count(replicas, 0, 1000)}", *_ns(namespace)])


def kubectl_set_env(deployment: str, key: str, value: str, namespace: str | None = None) -> Command:
    # the value may be anything: it is one argv element, quoted when shown
    return Command(argv=["kubectl", "set", "env", f"deployment/{k8s_label_name(deployment, 'deployment')}",
                         *_ns(namespace), f"{env_key(key)}={value}"])


def kubectl_unset_env(deployment: str, key: str, namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "set", "env", f"deployment/{k8s_label_name(deployment, 'deployment')}",
                         *_ns(namespace), f"{env_key(key)}-"])


def kubectl_network_policies(namespace: str | None = None) -> Command:
    return Command(argv=["kubectl", "get", "networkpolicy", *_ns(namespace)])


def git_show(sha: str) -> Command:
    return Command(argv=["git", "show", "--stat", git_sha(sha)])


def git_revert(sha: str, branch: str) -> list[Command]:
    """A branch off HEAD with the revert commit on it (two commands)."""
    return [Command(argv=["git", "switch", "-c", git_ref(branch)]),
            Command(argv=["git", "revert", "--no-edit", git_sha(sha)])]


def argocd_rollback(app: str, history_id: int) -> Command:
    return Command(argv=["argocd", "app", "rollback", k8s_name(app, "application"), str(count(history_id, 0, 10**9))])


def argocd_history(app: str) -> Command:
    return Command(argv=["argocd", "app", "history", k8s_name(app, "application")])
