"""Argo CD as a change source: every sync an Application recorded becomes a ``deploy`` change on the
service it deploys.

One read-only call per query, ``GET /api/v1/applications`` (an Argo CD API token, e.g. of a local
account with ``applications, get`` only, as a bearer ``SecretRef``), and from each Application:

- ``status.history[]`` (id, revision, deployedAt, source, initiatedBy): the syncs that completed, at
  ``deployedAt``;
- ``status.operationState``: the current or last operation. A sync that is still ``Running`` (at
  ``startedAt``) or ended ``Failed``/``Error`` (at ``finishedAt``) is not in the history yet is a change
  too (a half-applied rollout is a classic trigger); a ``Succeeded`` one is already in the history.

The service of an Application: ``services`` (application name -> service), else the application name.
``projects`` and ``selector`` (a label selector) narrow which Applications are read."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field

from vigil.sources.connector import Connector, HttpConfig, SourceError, empty
from vigil.sources.httpjson import JsonHttp, one_line

APPS = "/api/v1/applications"
UNFINISHED = ("Running", "Terminating")
FAILED = ("Failed", "Error")


class ArgoCDConfig(HttpConfig):
    projects: list[str] = Field(default_factory=list, max_length=100, description="Only these Argo CD projects.")
    selector: str | None = Field(default=None, max_length=500, description="Kubernetes label selector on apps.")
    services: dict[str, str] = Field(default_factory=dict, max_length=5000,
                                     description="Application name -> service (default: the application name).")


def _ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _who(initiated: Any) -> str:
    if not isinstance(initiated, dict):
        return ""
    if initiated.get("username"):
        return str(initiated["username"])[:100]
    return "automated" if initiated.get("automated") else ""


def _source(src: Any) -> str:
    if not isinstance(src, dict):
        return ""
    where = src.get("chart") or src.get("path") or ""
    return f"{src.get('repoURL', '')}{'/' + str(where) if where else ''}"[:200]


class ArgoCDConnector(Connector):
    kind: ClassVar[str] = "argocd"
    Config = ArgoCDConfig
    roles: ClassVar[frozenset[str]] = frozenset({"changes"})
    config: ArgoCDConfig

    def __init__(self, name: str, config: ArgoCDConfig) -> None:
        super().__init__(name, config)
        self._http = JsonHttp(config, "Argo CD")

    def applications(self) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if self.config.projects:
            params["projects"] = self.config.projects
        if self.config.selector:
            params["selector"] = self.config.selector
        body = self._http.get_json(APPS, params or None)
        if not isinstance(body, dict):
            raise SourceError("Argo CD answered the application list with something that is not an object")
        items = body.get("items") or []       # an empty list is marshalled as null
        if not isinstance(items, list):
            raise SourceError("Argo CD's application list has no items list")
        return [a for a in items if isinstance(a, dict)]

    def check(self) -> str:
        apps = self.applications()
        names = [str((a.get("metadata") or {}).get("name", "?")) for a in apps]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (f"Argo CD at {self._http.host} answered: {len(apps)} application(s)"
                + (f" ({shown})" if shown else ""))

    def rows_of(self, app: dict[str, Any], start: float, end: float) -> list[dict[str, Any]]:
        """The change rows of one Application within [start, end)."""
        meta = app.get("metadata") if isinstance(app.get("metadata"), dict) else {}
        status = app.get("status") if isinstance(app.get("status"), dict) else {}
        name = str(meta.get("name") or "")
        if not name:
            return []
        svc = self.config.services.get(name, name)
        rows, seen = [], []
        prev: dict[str, Any] | None = None
        for h in status.get("history") or []:
            if not isinstance(h, dict):
                continue
            before, prev = prev, h
            ts = _ts(h.get("deployedAt"))
            rev = str(h.get("revision") or ",".join(map(str, h.get("revisions") or [])))
            if ts is None:
                continue
            seen.append((rev, ts))
            if start <= ts < end:
                src = _source(h.get("source") or (h.get("sources") or [None])[0])
                rows.append({"resource": svc, "ts": ts, "kind": "deploy", "author": _who(h.get("initiatedBy")),
                             "description": f"Argo CD synced {name} to {rev[:12] or '?'} (history {h.get('id')})"
                                            + (f" from {src}" if src else ""),
                             "detail": json.dumps({"source": "argocd", "app": name, "history_id": h.get("id"),
                                                   "revision": rev, **({"previous_history_id": before.get("id"),
                                                                        "previous_revision": before.get("revision")}
                                                                       if before else {})}, sort_keys=True,
                                                  default=str)})
        op = status.get("operationState")
        if isinstance(op, dict):
            phase = str(op.get("phase") or "")
            operation = op.get("operation") if isinstance(op.get("operation"), dict) else {}
            sync_result = op.get("syncResult") if isinstance(op.get("syncResult"), dict) else {}
            rev = str(sync_result.get("revision") or (operation.get("sync") or {}).get("revision") or "")
            ts = _ts(op.get("startedAt")) if phase in UNFINISHED else _ts(op.get("finishedAt"))
            recorded = any(r == rev and abs(t - ts) < 60 for r, t in seen) if ts is not None else True
            if ts is not None and start <= ts < end and not recorded and (phase in UNFINISHED + FAILED
                                                                           or phase == "Succeeded"):
                msg = one_line(str(op.get("message") or ""), 160)
                rows.append({"resource": svc, "ts": ts, "kind": "deploy", "author": _who(operation.get("initiatedBy")),
                             "description": f"Argo CD sync of {name} to {rev[:12] or '?'} {phase.lower()}"
                                            + (f": {msg}" if msg else ""),
                             "detail": json.dumps({"source": "argocd", "app": name, "revision": rev,
                                                   "phase": phase}, sort_keys=True)})
        return rows

    def changes(self, start: float, end: float) -> pd.DataFrame:
        rows = [r for app in self.applications() for r in self.rows_of(app, start, end)]
        if not rows:
            return empty("changes")
        return pd.DataFrame(rows)[["resource", "ts", "kind", "description", "author", "detail"]].sort_values(
            "ts", kind="stable").reset_index(drop=True)

    def close(self) -> None:
        self._http.close()
