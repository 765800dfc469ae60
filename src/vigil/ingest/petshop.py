"""PetShop layout (amazon-science/petshop-root-cause-analysis): ``<scenario>/graph.csv``,
``<scenario>/noissue/metrics.csv`` and ``<scenario>/{train,test}/issue_N/{metrics.csv,target.json}``.

Each issue is its own recording. The engine gets what the alert gives: the target node, metric and
time. ``root_cause`` is the label; ``metadata`` (it names the injected mechanism) is never read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from vigil.errors import InputError
from vigil.ingest.base import Case, Label, Recording, find_csv, read_csv, walk_dirs
from vigil.model import Alert, Edge, EdgeKind, EdgeSource, Resource, Topology
from vigil.store.telemetry import TelemetryWriter


def discover(root: Path) -> list[Recording]:
    out = []
    for d in walk_dirs(root):
        if (d / "target.json").is_file() and find_csv(d, "metrics"):
            out.append(_recording(d))
    return out


def _scenario_dir(issue_dir: Path) -> Path:
    # <scenario>/<split>/issue_N, or <scenario>/issue_N
    for cand in (issue_dir.parent.parent, issue_dir.parent):
        if find_csv(cand, "graph") or (cand / "noissue").is_dir():
            return cand
    return issue_dir.parent.parent


def _recording(issue_dir: Path) -> Recording:
    scenario = _scenario_dir(issue_dir)
    dataset = f"petshop/{scenario.name}"
    try:
        target = json.loads((issue_dir / "target.json").read_text())
        t = target["target"]
        alert = Alert(id=issue_dir.name, title=f"{t['node']} {t['metric']} ({t.get('agg', '')})",
                      at=datetime.fromtimestamp(float(t["timestamp"]), UTC), resource=str(t["node"]),
                      metric=f"{t['metric']}:{t['agg']}" if t.get("agg") else str(t["metric"]))
        rc = target.get("root_cause") or {}
        label = Label(resource=str(rc["node"])) if rc.get("node") else None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as exc:
        raise InputError(f"{issue_dir / 'target.json'}: not a PetShop target ({exc})") from None
    rel = issue_dir.relative_to(scenario) if issue_dir.is_relative_to(scenario) else Path(issue_dir.name)
    case = Case(id=f"{dataset}/{rel.as_posix()}", dataset=dataset, alert=alert, label=label)
    return Recording(format="petshop", dataset=dataset, path=issue_dir,
                     name=f"{dataset}/{rel.as_posix()}".replace("/", "-"), cases=[case],
                     loader=lambda w, space: load_issue(w, space, issue_dir, scenario, case))


@lru_cache(maxsize=4)
def read_metrics(path: Path) -> pd.DataFrame:
    """PetShop's wide metrics table (three header rows, a ``unix_timestamp`` row) in long form."""
    wide = read_csv(path, header=[0, 1, 2], index_col=0)
    index = pd.to_numeric(pd.Series(wide.index, dtype=str), errors="coerce").to_numpy()
    wide = wide[np.isfinite(index)]
    ts = index[np.isfinite(index)]
    frames = []
    for (node, metric, stat) in wide.columns:
        v = pd.to_numeric(wide[(node, metric, stat)], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(v)
        if ok.any():
            frames.append(pd.DataFrame({"resource": node, "name": f"{metric}:{stat}", "ts": ts[ok], "value": v[ok]}))
    if not frames:
        raise InputError(f"{path}: no metric values")
    return pd.concat(frames, ignore_index=True)


@lru_cache(maxsize=4)
def read_graph(path: Path) -> Topology:
    adj = read_csv(path, index_col=0)
    edges, names = [], set()
    for src, row in adj.iterrows():
        for dst, v in row.items():
            if pd.notna(v) and float(v) != 0:
                edges.append(Edge(src=str(src), dst=str(dst), kind=EdgeKind.CALLS, source=EdgeSource.DATASET))
        names.add(str(src))
    return Topology(resources=[Resource(name=n) for n in sorted(names | set(map(str, adj.columns)))], edges=edges)


def load_issue(w: TelemetryWriter, space: str, issue_dir: Path, scenario: Path, case: Case) -> list[str]:
    warnings = []
    metrics = read_metrics(find_csv(issue_dir, "metrics"))
    w.metrics(space, metrics)
    normal = find_csv(scenario / "noissue", "metrics")
    if normal is not None:
        base = read_metrics(normal)
        w.metrics(space, base)
        w.baseline(space, float(base["ts"].min()), float(base["ts"].max()) + 1, note="noissue: normal operation")
    else:
        warnings.append(f"petshop/{scenario.name}: no noissue/metrics.csv; using the pre-incident window as baseline")
    graph = find_csv(scenario, "graph")
    if graph is not None:
        w.topology(space, read_graph(graph))
    else:
        warnings.append(f"petshop/{scenario.name}: no graph.csv; topology unknown")
        w.topology(space, Topology(resources=[Resource(name=n) for n in sorted(metrics["resource"].unique())]))
    w.alert(space, case.alert)
    return warnings
