"""A local stand-in for the Kubernetes API server (no cluster can run here), for the connector tests.

Response bodies follow the Kubernetes API reference for v1.31 (https://kubernetes.io/docs/reference/
kubernetes-api/): list envelopes ``{kind: <Kind>List, apiVersion, metadata: {resourceVersion,
continue}, items}`` (items without kind/apiVersion, as the server sends them), ``Status`` bodies for
errors, ``/version`` as ``version.Info``, RFC 3339 timestamps, and these objects: core/v1 Pod (with
``status.containerStatuses[].lastState.terminated``), Service, Event (core/v1, ``involvedObject``,
``firstTimestamp``/``lastTimestamp``, ``eventTime`` null as the kubelet writes it), apps/v1 Deployment
and ReplicaSet (``deployment.kubernetes.io/revision`` annotation, ``ownerReferences``). The official
client deserializes every body into its typed models with client-side validation on, so a missing
required field fails the tests.

Served paths: ``/version``; ``/api/v1/{pods,services,events}`` and
``/api/v1/namespaces/{ns}/{pods,services,events}``; ``/apis/apps/v1/{deployments,replicasets}`` and the
namespaced forms. ``fieldSelector`` supports ``type=<v>`` (other fields -> 400, as for an unsupported
field); ``limit``/``continue`` paginate, and the server returns at most ``max_page`` items per page
(the API allows fewer than ``limit``), so clients must follow ``continue``.

The cluster is modelled on Nezha's Online Boutique recording (2022-08-22): the real service names, pod
names (their ReplicaSet hashes) and node addresses from its ``dependency.csv``. The rollout, events and
the OOM kill around the recorded fault (05:18:09 UTC, currencyservice) are made up for the test."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd

INJECT = 1661145489.0                 # 2022-08-22 05:18:09 UTC: cpu_contention on currencyservice
CREATED = INJECT - 7 * 86400
NS = "default"
IMAGE = "gcr.io/google-samples/microservices-demo/{}:v0.3.7"


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, ns: str, t: float, uid: str, **extra) -> dict:
    return {"name": name, "namespace": ns, "uid": uid, "resourceVersion": str(1000 + len(uid)),
            "creationTimestamp": rfc3339(t), **extra}


def _container(name: str, image: str) -> dict:
    return {"name": name, "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}}, "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}


def _labels(svc: str) -> dict:
    # frontend carries the recommended label as well; the rest only `app`, as Online Boutique's manifests do
    return {"app": svc, **({"app.kubernetes.io/name": svc} if svc == "frontend" else {})}


def build_cluster(metric_dir: Path) -> dict[str, list[dict]]:
    """Objects by collection ("pods", "services", "events", "deployments", "replicasets")."""
    pods_names = sorted(p.name.removesuffix("_metric.csv.gz").removesuffix("_metric.csv")
                        for p in metric_dir.glob("*_metric.csv*"))
    dep = pd.read_csv(metric_dir / "dependency.csv.gz")
    node_of = {s: t for s, t in zip(dep.Source, dep.Target, strict=True) if re.fullmatch(r"[\d.]+", str(t))}
    out: dict[str, list[dict]] = {"pods": [], "services": [], "events": [], "deployments": [], "replicasets": []}
    for pod in pods_names:
        svc, rs_hash, _ = pod.rsplit("-", 2)
        labels = _labels(svc)
        image = IMAGE.format(svc)
        deploy_uid, rs_uid = f"d-{svc}", f"rs-{svc}-{rs_hash}"
        selector = {"matchLabels": {"app": svc}}
        template = {"metadata": {"labels": labels}, "spec": {"containers": [_container("server", image)]}}
        revision = 1
        if svc == "currencyservice":                       # a rollout 5 minutes before the recorded fault
            old = {"metadata": {"labels": labels}, "spec": {"containers": [_container("server", image)]}}
            out["replicasets"].append({
                "metadata": _meta(f"{svc}-7d4f9c8b6", NS, CREATED, f"rs-{svc}-old", labels={**labels,
                                  "pod-template-hash": "7d4f9c8b6"},
                                  annotations={"deployment.kubernetes.io/revision": "1"},
                                  ownerReferences=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": svc,
                                                    "uid": deploy_uid, "controller": True,
                                                    "blockOwnerDeletion": True}]),
                "spec": {"replicas": 0, "selector": selector, "template": old},
                "status": {"replicas": 0, "observedGeneration": 1}})
            image = image.replace("v0.3.7", "v0.3.8")
            template = {"metadata": {"labels": labels}, "spec": {"containers": [_container("server", image)]}}
            revision = 2
        rs_created = INJECT - 300 if revision == 2 else CREATED
        rs_ann = {"deployment.kubernetes.io/revision": str(revision)}
        if revision == 2:
            rs_ann["kubernetes.io/change-cause"] = f"kubectl set image deployment/{svc} server={image}"
        out["replicasets"].append({
            "metadata": _meta(f"{svc}-{rs_hash}", NS, rs_created, rs_uid,
                              labels={**labels, "pod-template-hash": rs_hash}, annotations=rs_ann,
                              ownerReferences=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": svc,
                                                "uid": deploy_uid, "controller": True, "blockOwnerDeletion": True}]),
            "spec": {"replicas": 1, "selector": selector, "template": template},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}})
        out["deployments"].append({
            "metadata": _meta(svc, NS, CREATED, deploy_uid, labels=labels,
                              annotations={"deployment.kubernetes.io/revision": str(revision)}, generation=revision),
            "spec": {"replicas": 1, "selector": selector, "template": template,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                     "revisionHistoryLimit": 10},
            "status": {"observedGeneration": revision, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                       "availableReplicas": 1}})
        node = node_of.get(svc, "33.33.33.80")
        status = {"name": "server", "image": image, "imageID": f"docker-pullable://{image}@sha256:{'0' * 64}",
                  "containerID": f"containerd://{'a' * 64}", "ready": True, "started": True, "restartCount": 0,
                  "state": {"running": {"startedAt": rfc3339(rs_created + 20)}}, "lastState": {}}
        if svc == "cartservice":                           # OOM-killed 80 s after the fault, restarted
            status |= {"restartCount": 1, "state": {"running": {"startedAt": rfc3339(INJECT + 82)}},
                       "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                                    "startedAt": rfc3339(CREATED + 20),
                                                    "finishedAt": rfc3339(INJECT + 80),
                                                    "containerID": f"containerd://{'b' * 64}"}}}
        out["pods"].append({
            "metadata": _meta(pod, NS, rs_created + 10, f"p-{pod}", labels={**labels, "pod-template-hash": rs_hash},
                              generateName=f"{svc}-{rs_hash}-",
                              ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{svc}-{rs_hash}",
                                                "uid": rs_uid, "controller": True, "blockOwnerDeletion": True}]),
            "spec": {"containers": [_container("server", image)], "nodeName": node, "restartPolicy": "Always",
                     "serviceAccountName": "default", "dnsPolicy": "ClusterFirst"},
            "status": {"phase": "Running", "hostIP": node, "podIP": f"10.244.0.{len(out['pods']) + 10}",
                       "startTime": rfc3339(rs_created + 10), "qosClass": "Burstable",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(rs_created + 30)}],
                       "containerStatuses": [status]}})
        out["services"].append(_service(svc, {"app": svc}))
    out["services"].append(_service("frontend-external", {"app": "frontend"}, kind="LoadBalancer"))
    out["services"].append(_service("kubernetes", None))                 # the API server: no selector
    # another namespace, to check namespace scoping
    out["pods"].append({"metadata": _meta("coredns-5d78c9869d-x7k2p", "kube-system", CREATED, "p-coredns",
                                          labels={"k8s-app": "kube-dns"}),
                        "spec": {"containers": [_container("coredns", "registry.k8s.io/coredns/coredns:v1.11.1")],
                                 "nodeName": "33.33.33.76"},
                        "status": {"phase": "Running"}})
    out["services"].append(_service("kube-dns", {"k8s-app": "kube-dns"}, ns="kube-system"))

    def event(n: int, pod: str, t: float, reason: str, message: str, type_: str = "Warning", count: int = 1,
              component: str = "kubelet", ns: str = NS) -> dict:
        return {"metadata": _meta(f"{pod}.17df{n:08x}", ns, t, f"e-{n}"),
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod, "uid": f"p-{pod}", "apiVersion": "v1",
                                   "resourceVersion": "4242", "fieldPath": "spec.containers{server}"},
                "reason": reason, "message": message, "source": {"component": component, "host": "node"},
                "firstTimestamp": rfc3339(t - 60 * (count - 1)), "lastTimestamp": rfc3339(t), "count": count,
                "type": type_, "eventTime": None, "reportingComponent": component, "reportingInstance": "node"}
    pod = {p["metadata"]["labels"]["app"]: p["metadata"]["name"] for p in out["pods"] if "app" in p["metadata"]["labels"]}
    out["events"] += [
        event(1, pod["frontend"], INJECT + 40, "Unhealthy",
              "Readiness probe failed: HTTP probe failed with statuscode: 500", count=3),
        event(2, pod["cartservice"], INJECT + 90, "BackOff", "Back-off restarting failed container server in pod "
              f"{pod['cartservice']}_default(p-{pod['cartservice']})"),
        event(3, pod["currencyservice"], INJECT - 290, "Pulled", "Successfully pulled image", type_="Normal"),
        event(4, pod["adservice"], INJECT - 7200, "Unhealthy", "Liveness probe failed: timeout"),
        event(5, "coredns-5d78c9869d-x7k2p", INJECT + 30, "DNSConfigForming", "Nameserver limits were exceeded",
              ns="kube-system"),
    ]
    return out


def _service(name: str, selector: dict | None, kind: str = "ClusterIP", ns: str = NS) -> dict:
    spec = {"type": kind, "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}
    if selector:
        spec["selector"] = selector
    return {"metadata": _meta(name, ns, CREATED, f"s-{ns}-{name}"), "spec": spec, "status": {"loadBalancer": {}}}


_KINDS = {"pods": ("v1", "PodList"), "services": ("v1", "ServiceList"), "events": ("v1", "EventList"),
          "deployments": ("apps/v1", "DeploymentList"), "replicasets": ("apps/v1", "ReplicaSetList")}
_PATH = re.compile(r"^/(?:api/v1|apis/apps/v1)(?:/namespaces/(?P<ns>[a-z0-9-]+))?/(?P<what>[a-z]+)$")
_ONE = re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[a-z0-9-]+)/deployments/(?P<name>[a-z0-9-]+)(?P<scale>/scale)?$")


def _strip_hash(template: dict) -> dict:
    t = json.loads(json.dumps(template))
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return t


class K8sStandIn:
    """``with K8sStandIn(objects, token="t") as k: k.url``. ``delay_s`` delays every answer;
    ``requests`` records (path, query) of each request."""

    def __init__(self, objects: dict[str, list[dict]], token: str = "", max_page: int = 4, delay_s: float = 0.0):
        self.objects, self.token, self.max_page, self.delay_s = objects, token, max_page, delay_s
        self.requests: list[tuple[str, dict]] = []
        self.writes: list[tuple[str, str, str, object]] = []      # (method, path, content type, body)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_PATCH(self):
                parts = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"null")
                ctype = self.headers.get("Content-Type", "")
                outer.writes.append(("PATCH", parts.path, ctype, body))
                if outer.token and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                m = _ONE.match(parts.path)
                dep = outer._deployment(m["ns"], m["name"]) if m else None
                if dep is None:
                    return self._send(404, _status(404, "NotFound", "deployments.apps not found"))
                if m["scale"]:
                    if ctype.split(";")[0] not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                        return self._send(415, _status(415, "UnsupportedMediaType", "the body of the request was in an "
                                                       "unknown format - accepted media types include: "
                                                       "application/merge-patch+json"))
                    dep["spec"]["replicas"] = int(body["spec"]["replicas"])
                    return self._send(200, outer._scale(dep))
                if ctype.split(";")[0] != "application/json-patch+json" or not isinstance(body, list):
                    return self._send(415, _status(415, "UnsupportedMediaType", "expected a JSON patch"))
                for op in body:
                    if op.get("op") != "replace" or op.get("path") != "/spec/template":
                        return self._send(422, _status(422, "Invalid", f"unsupported patch {op.get('path')}"))
                    dep["spec"]["template"] = op["value"]
                outer._rollout(dep)
                return self._send(200, dep)

            def do_GET(self):
                parts = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                outer.requests.append((parts.path, q))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                if outer.token and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                one = _ONE.match(parts.path)
                if one:
                    dep = outer._deployment(one["ns"], one["name"])
                    if dep is None:
                        return self._send(404, _status(404, "NotFound",
                                                       f'deployments.apps "{one["name"]}" not found'))
                    return self._send(200, outer._scale(dep) if one["scale"] else
                                      {"kind": "Deployment", "apiVersion": "apps/v1", **dep})
                if parts.path in ("/version", "/version/"):       # the official client asks for /version/
                    return self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.4",
                                            "gitCommit": "a78aa47129b8539636eb86a9d00e31b2720fe06b",
                                            "gitTreeState": "clean", "buildDate": "2024-12-10T11:37:23Z",
                                            "goVersion": "go1.22.9", "compiler": "gc", "platform": "linux/amd64"})
                m = _PATH.match(parts.path)
                if not m or m["what"] not in _KINDS or \
                        parts.path.startswith("/apis/apps/v1") != (_KINDS[m["what"]][0] == "apps/v1"):
                    return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
                items = [o for o in outer.objects.get(m["what"], [])
                         if m["ns"] is None or o["metadata"]["namespace"] == m["ns"]]
                if q.get("labelSelector"):
                    want = dict(kv.split("=", 1) for kv in q["labelSelector"].split(","))
                    items = [o for o in items if all((o["metadata"].get("labels") or {}).get(k) == v
                                                     for k, v in want.items())]
                sel = q.get("fieldSelector")
                if sel:
                    fm = re.fullmatch(r"type=(\w+)", sel)
                    if not fm or m["what"] != "events":
                        return self._send(400, _status(400, "BadRequest",
                                                       f'"{sel}" is not a known field selector: only "type"'))
                    items = [o for o in items if o.get("type") == fm[1]]
                start = int(base64.b64decode(q["continue"]).decode()) if q.get("continue") else 0
                size = min(int(q.get("limit") or 10**9), outer.max_page)
                page = items[start:start + size]
                meta = {"resourceVersion": "98765"}
                if start + size < len(items):
                    meta["continue"] = base64.b64encode(str(start + size).encode()).decode()
                    meta["remainingItemCount"] = len(items) - start - size
                api, kind = _KINDS[m["what"]]
                return self._send(200, {"kind": kind, "apiVersion": api, "metadata": meta, "items": page})

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _deployment(self, ns: str, name: str) -> dict | None:
        return next((d for d in self.objects.get("deployments", []) if d["metadata"]["namespace"] == ns
                     and d["metadata"]["name"] == name), None)

    def _scale(self, dep: dict) -> dict:
        m = dep["metadata"]
        sel = ",".join(f"{k}={v}" for k, v in sorted(dep["spec"]["selector"]["matchLabels"].items()))
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                             "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
                "spec": {"replicas": dep["spec"]["replicas"]},
                "status": {"replicas": dep["status"].get("replicas", 0), "selector": sel}}

    def _rollout(self, dep: dict) -> None:
        """What the Deployment controller does after a template change: the ReplicaSet with that template
        becomes the newest revision (and the deployment's revision annotation follows)."""
        name, ns = dep["metadata"]["name"], dep["metadata"]["namespace"]
        owned = [rs for rs in self.objects.get("replicasets", []) if rs["metadata"]["namespace"] == ns and any(
            o["name"] == name for o in rs["metadata"].get("ownerReferences", []))]
        top = max(int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in owned)
        want = _strip_hash(dep["spec"]["template"])
        for rs in owned:
            if _strip_hash(rs["spec"]["template"]) == want:
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(top + 1)
                rs["spec"]["replicas"] = dep["spec"]["replicas"]
            else:
                rs["spec"]["replicas"] = 0
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(top + 1)
        dep["metadata"]["generation"] = dep["metadata"].get("generation", 1) + 1

    def __enter__(self) -> K8sStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
