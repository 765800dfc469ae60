"""Kubernetes connector (official ``kubernetes`` client): rollouts as changes, Warning events and
container restarts / OOM kills as logs, and the Service -> workload -> Pod -> Node topology.

Why events and restarts are logs, not changes: the engine scores every change near the onset as a
candidate *cause*, while a Warning event (a failing probe, a back-off) or a restart is usually a
*symptom*; as log lines they are counted before and after the onset like any other log template.
A rollout (a new ReplicaSet revision of a Deployment) is a cause candidate, so it is a ``deploy`` change
whose description names the image change.

The service a pod belongs to is its ``service_label`` (default ``app.kubernetes.io/name``), else one of
``fallback_labels`` (default ``app``), else its owner Deployment's name. Read-only: only ``list`` and
``get`` calls; the RBAC it needs is get/list on pods, services, events, replicasets and deployments."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field, field_validator, model_validator

from vigil.frames import service_of_pod
from vigil.model import Edge, EdgeKind, EdgeSource, Resource, Topology
from vigil.sources.connector import Connector, ConnectorConfig, SecretRef, SourceError, empty
from vigil.sources.safety import check_url, unsafe_reason, vet_urllib3

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
PAGE = 500
MAX_ITEMS = 20_000


class KubernetesConfig(ConnectorConfig):
    kubeconfig: str | None = Field(default=None, max_length=1000, description="Path to a kubeconfig file.")
    context: str | None = Field(default=None, max_length=253)
    api_url: str | None = Field(default=None, max_length=2000, description="The API server, with `token`.")
    token: SecretRef | None = Field(default=None, description="A bearer token (e.g. a service account's).")
    ca_file: str | None = Field(default=None, max_length=1000)
    verify_tls: bool = True
    allow_link_local: bool = False
    namespaces: list[str] = Field(default_factory=list, max_length=50, description="Empty: all namespaces.")
    service_label: str = Field(default="app.kubernetes.io/name", max_length=317)
    fallback_labels: list[str] = Field(default_factory=lambda: ["app"], max_length=10)

    @field_validator("namespaces")
    @classmethod
    def _ns(cls, v: list[str]) -> list[str]:
        import re
        for ns in v:
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns):
                raise ValueError(f"{ns[:70]!r} is not a namespace name")
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> KubernetesConfig:
        if self.api_url is not None and self.kubeconfig is not None:
            raise ValueError("give kubeconfig (and context) or api_url (and token), not both")
        if self.api_url is not None:
            if not self.api_url.startswith(("http://", "https://")):
                raise ValueError("api_url must start with http:// or https://")
            check_url(self.api_url, allow_link_local=self.allow_link_local)
        if self.token is not None and self.api_url is None:
            raise ValueError("token goes with api_url")
        return self


def _ts(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _images(template: Any) -> dict[str, str]:
    spec = getattr(template, "spec", None)
    return {c.name: c.image or "" for c in (getattr(spec, "containers", None) or [])}


def _image_change(old: dict[str, str], new: dict[str, str]) -> str:
    parts = [f"{c}: {old.get(c, '(none)')} -> {img}" for c, img in sorted(new.items()) if old.get(c) != img]
    parts += [f"{c}: removed" for c in sorted(old) if c not in new]
    return "; ".join(parts) or "pod template changed, images unchanged"


def _env(template: Any) -> dict[str, str]:
    """``container/NAME`` -> the value (or ``valueFrom`` reference) of every environment variable."""
    spec = getattr(template, "spec", None)
    out = {}
    for c in getattr(spec, "containers", None) or []:
        for e in getattr(c, "env", None) or []:
            ref = getattr(e, "value_from", None)
            out[f"{c.name}/{e.name}"] = e.value if e.value is not None else (f"(from {ref})" if ref else "")
    return out


def _changed_keys(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Environment variables added, removed or changed between two pod templates (names only: values may
    be secrets)."""
    keys = sorted({k for k in old.keys() | new.keys() if old.get(k) != new.get(k)})
    return [k.split("/", 1)[1] for k in keys][:50]


class KubernetesConnector(Connector):
    kind: ClassVar[str] = "kubernetes"
    Config: ClassVar[type[KubernetesConfig]] = KubernetesConfig
    roles: ClassVar[frozenset[str]] = frozenset({"changes", "logs", "topology"})
    config: KubernetesConfig

    def __init__(self, name: str, config: KubernetesConfig) -> None:
        super().__init__(name, config)
        self._api = None
        self._where = "the cluster"

    # -- client -------------------------------------------------------------------------------------
    def _client(self):
        if self._api is not None:
            return self._api
        from kubernetes import client
        from kubernetes import config as kconfig

        c = self.config
        try:
            if c.api_url is not None:
                cfg = client.Configuration()
                cfg.host = c.api_url.rstrip("/")
                if c.token is not None:
                    cfg.api_key = {"authorization": c.token.value()}
                    cfg.api_key_prefix = {"authorization": "Bearer"}
                cfg.verify_ssl = c.verify_tls
                if c.ca_file:
                    cfg.ssl_ca_cert = c.ca_file
                cfg.retries = 0          # one attempt: the router bounds each call by timeout_s
                api = client.ApiClient(cfg)
            elif c.kubeconfig is not None:
                cfg = client.Configuration()
                kconfig.load_kube_config(config_file=c.kubeconfig, context=c.context, client_configuration=cfg,
                                         persist_config=False)
                cfg.retries = 0          # one attempt: the router bounds each call by timeout_s
                api = client.ApiClient(cfg)
            else:
                cfg = client.Configuration()
                kconfig.load_incluster_config(client_configuration=cfg)
                cfg.retries = 0          # one attempt: the router bounds each call by timeout_s
                api = client.ApiClient(cfg)
        except SourceError:
            raise
        except (kconfig.ConfigException, OSError, ValueError, TypeError) as exc:
            raise SourceError(f"cannot load the Kubernetes client configuration: {_line(exc)}") from None
        # every connection's address is vetted when it is made, whichever way the cluster was configured
        vet_urllib3(api.rest_client.pool_manager, allow_link_local=c.allow_link_local)
        self._where = _host(cfg.host)
        self._api = api
        return api

    def _call(self, fn: Callable[..., Any], what: str, **kw: Any) -> Any:
        """One API call bounded by the timeout; failures are one-line ``SourceError``s."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        t = self.config.timeout_s
        try:
            return fn(**kw, _request_timeout=(t, t))
        except ApiException as exc:
            reason = _status_message(exc)
            if exc.status in (401, 403):
                raise SourceError(f"Kubernetes at {self._where} refused {what}: HTTP {exc.status}"
                                  + (f": {reason}" if reason else "") + " (check the token and RBAC)") from None
            raise SourceError(f"Kubernetes at {self._where} refused {what}: HTTP {exc.status}"
                              + (f": {reason}" if reason else "")) from None
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError, TimeoutError):
            raise SourceError(f"Kubernetes at {self._where} did not answer {what} within {t:g} s") from None
        except urllib3.exceptions.MaxRetryError as exc:
            if why := unsafe_reason(exc):
                raise SourceError(f"cannot reach Kubernetes at {self._where}: {why}") from None
            if isinstance(exc.reason, urllib3.exceptions.NewConnectionError):     # refused, no route, no DNS
                raise SourceError(f"cannot reach Kubernetes at {self._where}") from None
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError | TimeoutError):
                raise SourceError(f"Kubernetes at {self._where} did not answer {what} within {t:g} s") from None
            raise SourceError(f"cannot reach Kubernetes at {self._where}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if why := unsafe_reason(exc):
                raise SourceError(f"cannot reach Kubernetes at {self._where}: {why}") from None
            raise SourceError(f"cannot reach Kubernetes at {self._where}: {type(exc).__name__}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise SourceError(f"Kubernetes at {self._where} answered {what} with an unreadable body "
                              f"({type(exc).__name__})") from None

    def _list(self, namespaced: str, cluster: str, what: str, api: str = "core", **kw: Any) -> list[Any]:
        """Items of a list call over the configured namespaces (or all), following ``continue``."""
        from kubernetes import client

        self._client()
        obj = (client.CoreV1Api if api == "core" else client.AppsV1Api)(self._api)
        targets = [(getattr(obj, namespaced), {"namespace": ns}) for ns in self.config.namespaces] or \
                  [(getattr(obj, cluster), {})]
        out: list[Any] = []
        for fn, args in targets:
            token = None
            while len(out) < MAX_ITEMS:
                extra = {"_continue": token} if token else {}
                got = self._call(fn, what, limit=PAGE, **args, **kw, **extra)
                out.extend(got.items or [])
                token = getattr(got.metadata, "_continue", None)
                if not token:
                    break
        return out

    # -- helpers ------------------------------------------------------------------------------------
    def _service(self, labels: dict[str, str] | None, fallback: str) -> str:
        labels = labels or {}
        for key in (self.config.service_label, *self.config.fallback_labels):
            if labels.get(key):
                return labels[key]
        return fallback

    def _pods(self) -> list[Any]:
        return self._list("list_namespaced_pod", "list_pod_for_all_namespaces", "pods")

    def _pod_service(self, pod: Any) -> str:
        owner = next((o for o in pod.metadata.owner_references or [] if o.controller), None)
        fallback = service_of_pod(pod.metadata.name)
        if owner is not None and owner.kind in ("StatefulSet", "DaemonSet", "Job"):
            fallback = owner.name
        return self._service(pod.metadata.labels, fallback)

    # -- roles --------------------------------------------------------------------------------------
    def changes(self, start: float, end: float) -> pd.DataFrame:
        """Deployment rollouts: each ReplicaSet revision created in the window, with the image change."""
        rsets = self._list("list_namespaced_replica_set", "list_replica_set_for_all_namespaces", "replicasets",
                           api="apps")
        by_deploy: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        for rs in rsets:
            owner = next((o for o in rs.metadata.owner_references or [] if o.kind == "Deployment"), None)
            rev = (rs.metadata.annotations or {}).get(REVISION)
            if owner is None or rev is None or not str(rev).isdigit():
                continue
            by_deploy.setdefault((rs.metadata.namespace, owner.name), []).append((int(rev), rs))
        rows = []
        for (ns, deploy), revs in by_deploy.items():
            revs.sort(key=lambda x: x[0])
            for i, (rev, rs) in enumerate(revs):
                ts = _ts(rs.metadata.creation_timestamp)
                if ts is None or not (start <= ts <= end) or (i == 0 and rev == 1):
                    continue                       # the first revision is a creation, not a change
                new = _images(rs.spec.template)
                keys: list[str] = []
                if i > 0:
                    prev = revs[i - 1][1].spec.template
                    what = _image_change(_images(prev), new)
                    keys = _changed_keys(_env(prev), _env(rs.spec.template))
                    if keys and what == "pod template changed, images unchanged":
                        what = "environment changed: " + ", ".join(keys[:5])
                else:                              # older revisions pruned (revisionHistoryLimit)
                    what = "images " + ", ".join(f"{c}: {img}" for c, img in sorted(new.items()))
                ann = rs.metadata.annotations or {}
                svc = self._service(rs.spec.template.metadata.labels if rs.spec.template.metadata else None, deploy)
                desc = f"deployment {ns}/{deploy} revision {rev}: {what}"
                if ann.get(CHANGE_CAUSE):
                    desc += f" ({' '.join(ann[CHANGE_CAUSE].split())[:300]})"
                detail = {"source": "kubernetes", "namespace": ns, "deployment": deploy, "revision": rev,
                          "images": new, **({"previous_revision": revs[i - 1][0]} if i > 0 else {}),
                          **({"keys": keys} if keys else {})}
                rows.append({"resource": svc, "ts": ts, "kind": "deploy", "description": desc, "author": "",
                             "detail": json.dumps(detail, sort_keys=True)})
        if not rows:
            return empty("changes")
        return pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Warning events (``reason: message``) and container terminations (OOMKilled, Error, ...)."""
        pods = self._pods()
        pod_service = {(p.metadata.namespace, p.metadata.name): self._pod_service(p) for p in pods}
        rows = []
        for e in self._list("list_namespaced_event", "list_event_for_all_namespaces", "events",
                            field_selector="type=Warning"):
            if e.type != "Warning":
                continue
            ts = _ts(e.last_timestamp) or _ts(e.event_time) or _ts(e.first_timestamp) or \
                _ts(e.metadata.creation_timestamp)
            if ts is None or not (start <= ts <= end):
                continue
            obj = e.involved_object
            ns = obj.namespace or e.metadata.namespace
            res = pod_service.get((ns, obj.name)) if obj.kind == "Pod" else None
            res = res or (service_of_pod(obj.name) if obj.kind == "Pod" else obj.name)
            count = f" (x{e.count})" if e.count and e.count > 1 else ""
            rows.append({"resource": res, "ts": ts, "level": "WARN",
                         "body": f"{e.reason}: {' '.join(str(e.message or '').split())}{count} "
                                 f"[{obj.kind} {ns}/{obj.name}]"})
        for p in pods:
            for st in (p.status.container_statuses or []) if p.status else []:
                term = st.last_state.terminated if st.last_state else None
                ts = _ts(term.finished_at) if term else None
                if ts is None or not (start <= ts <= end):
                    continue
                level = "ERROR" if term.reason == "OOMKilled" or (term.exit_code or 0) != 0 else "WARN"
                rows.append({"resource": pod_service[(p.metadata.namespace, p.metadata.name)], "ts": ts,
                             "level": level,
                             "body": f"{term.reason or 'Terminated'}: container {st.name} of pod "
                                     f"{p.metadata.namespace}/{p.metadata.name} exited with code {term.exit_code}, "
                                     f"restarted ({st.restart_count} restarts)"})
        df = pd.DataFrame(rows, columns=["resource", "ts", "level", "body"])
        if resources is not None:
            df = df[df["resource"].isin(resources)]
        if contains:
            df = df[df["body"].str.contains(contains, regex=False)]
        df = df.assign(trace_id="", span_id="").sort_values("ts", kind="stable").reset_index(drop=True)
        return df.head(limit) if limit is not None else df

    def topology(self) -> Topology:
        """Service -> workload (by the service label) -> Pod -> Node."""
        pods = self._pods()
        services = self._list("list_namespaced_service", "list_service_for_all_namespaces", "services")
        deployments = self._list("list_namespaced_deployment", "list_deployment_for_all_namespaces",
                                 "deployments", api="apps")
        res: dict[str, Resource] = {}
        edges: list[Edge] = []

        def add(name: str, kind: str, **attrs: str) -> None:
            r = res.setdefault(name, Resource(name=name, kind=kind, attributes={}))
            r.attributes.update({k: v for k, v in attrs.items() if v})

        for d in deployments:
            tmpl = d.spec.template.metadata.labels if d.spec.template.metadata else None
            add(self._service(tmpl, d.metadata.name), "service", namespace=d.metadata.namespace,
                deployment=d.metadata.name)
        for p in pods:
            svc = self._pod_service(p)
            add(svc, "service", namespace=p.metadata.namespace)
            pod = f"pod:{p.metadata.namespace}/{p.metadata.name}"
            node = p.spec.node_name if p.spec else None
            add(pod, "pod", namespace=p.metadata.namespace, service=svc, node=node or "",
                phase=(p.status.phase if p.status else "") or "")
            edges.append(Edge(src=svc, dst=pod, kind=EdgeKind.RUNS_ON, source=EdgeSource.KUBERNETES))
            if node:
                add(f"node:{node}", "node")
                edges.append(Edge(src=pod, dst=f"node:{node}", kind=EdgeKind.RUNS_ON, source=EdgeSource.KUBERNETES))
                edges.append(Edge(src=svc, dst=f"node:{node}", kind=EdgeKind.RUNS_ON, source=EdgeSource.KUBERNETES))
        for s in services:
            sel = (s.spec.selector if s.spec else None) or {}
            if not sel:
                continue                           # no selector: endpoints managed elsewhere
            backends = sorted({self._pod_service(p) for p in pods if p.metadata.namespace == s.metadata.namespace
                               and all((p.metadata.labels or {}).get(k) == v for k, v in sel.items())})
            for b in backends:
                if b == s.metadata.name:
                    add(b, "service", k8s_service=s.metadata.name)
                else:                              # another name for the same workload (frontend-external)
                    add(s.metadata.name, "k8s-service", namespace=s.metadata.namespace)
                    edges.append(Edge(src=s.metadata.name, dst=b, kind=EdgeKind.DEPENDS_ON,
                                      source=EdgeSource.KUBERNETES))
        uniq = {(e.src, e.dst, e.kind): e for e in edges}
        return Topology(resources=list(res.values()), edges=list(uniq.values()))

    def check(self) -> str:
        from kubernetes import client

        self._client()
        v = self._call(client.VersionApi(self._api).get_code, "the version")
        scope = ", ".join(self.config.namespaces) or "all namespaces"
        return f"Kubernetes {v.git_version} at {self._where} answered; reading {scope}"

    def close(self) -> None:
        if self._api is not None:
            try:
                self._api.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self._api = None


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _host(url: str) -> str:
    from vigil.sources.prometheus import safe_url
    return safe_url(url) if url.startswith(("http://", "https://")) else url


def _status_message(exc: Any) -> str:
    """The ``reason`` of a Kubernetes ``Status`` body (``Forbidden``, ``NotFound``...), if it is one: never
    its free-text message, nor any other answer's text (the URL may be any service on the host's networks)."""
    import json

    from vigil.sources.httpjson import error_code
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError, AttributeError):
        return ""
    if not isinstance(body, dict) or body.get("kind") != "Status":
        return ""
    return error_code(body.get("reason"), 40) or ""
