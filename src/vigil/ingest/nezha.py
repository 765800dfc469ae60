"""Nezha layout (IntelligentDDS/Nezha, FSE 2023): ``rca_data/<day>/{metric,log,trace,traceid}`` with a
``<day>-fault_list.json``, and the fault-free baseline in ``construct_data/<day>``.

What the engine gets per case is the ``inject_time`` as alert time (UTC, as Nezha's own code reads
it; ``inject_timestamp`` is unreliable, see the dataset README). The injected pod and fault type
are labels, for the benchmark only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from vigil.errors import InputError
from vigil.frames import call_edges
from vigil.ingest.base import (
    Case,
    Label,
    Recording,
    csv_stem,
    level_of,
    list_csv,
    log,
    read_csv,
    service_of_pod,
    walk_dirs,
)
from vigil.model import Alert, Edge, EdgeKind, EdgeSource, FaultKind, Resource, Topology
from vigil.store.telemetry import TelemetryWriter

FAULT_KINDS = {
    "cpu_contention": FaultKind.CPU, "cpu_consumed": FaultKind.CPU, "network_delay": FaultKind.NETWORK_DELAY,
    "exception": FaultKind.ERROR, "return": FaultKind.LOGIC,
}
_META_COLUMNS = {"Time", "TimeStamp", "PodName", "ServiceName", "time", "timestamp"}


def discover(root: Path) -> list[Recording]:
    out = []
    for d in walk_dirs(root):
        lists = sorted(d.glob("*-fault_list.json"))
        if lists and (d / "metric").is_dir():
            out.append(_recording(d, lists[0]))
    return out


def _system_name(day_dir: Path) -> str:
    pods = [csv_stem(p) for p in list_csv(day_dir / "metric")]
    if any(p.startswith("ts-") for p in pods):
        return "trainticket"
    if any(p.startswith("frontend-") for p in pods):
        return "onlineboutique"
    return "system"


def _recording(day_dir: Path, fault_list: Path) -> Recording:
    day = day_dir.name
    dataset = f"nezha/{_system_name(day_dir)}/{day}"
    try:
        groups = json.loads(fault_list.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{fault_list}: not a valid fault list ({exc})") from None
    cases = []
    for entries in groups.values():
        for e in entries:
            at = datetime.strptime(e["inject_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            cid = f"{dataset}/{at:%H:%M:%S}"
            fault = str(e.get("inject_type", ""))
            cases.append(Case(
                id=cid, dataset=dataset,
                alert=Alert(id=f"{day}-{at:%H%M%S}", title="incident reported", at=at),
                label=Label(resource=service_of_pod(str(e["inject_pod"])), fault=fault,
                            fault_kind=FAULT_KINDS.get(fault))))
    cases.sort(key=lambda c: c.alert.at)
    baseline_dir = day_dir.parent.parent / "construct_data" / day
    return Recording(format="nezha", dataset=dataset, path=day_dir, name=dataset.replace("/", "-"), cases=cases,
                     loader=lambda w, space: load_day(w, space, day_dir, baseline_dir, cases))


def _epoch_from_go_time(col: pd.Series) -> np.ndarray:
    dt = pd.to_datetime(col.astype(str).str.slice(0, 19), format="%Y-%m-%d %H:%M:%S", utc=True, errors="coerce")
    return (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


_EDGE_TABLES = {"source_50": "latency:client-p50", "destination_50": "latency:server-p50"}


def _edge_latency(path: Path, name: str, known: set[str], resources: list[Resource],
                  warnings: list[str]) -> pd.DataFrame:
    """Per-edge latency (a service mesh's view): columns ``<caller>_<callee>``, measured at the caller
    (source) or at the callee (destination). Stored on an ``edge`` resource ``caller->callee``."""
    df = read_csv(path)
    if "time" not in df.columns:
        warnings.append(f"{path.name}: no time column, skipped")
        return pd.DataFrame()
    ts = _epoch_from_go_time(df["time"])
    out, seen = [], {r.name for r in resources}
    for col in df.columns:
        if col in ("time", "timestamp"):
            continue
        parts = str(col).split("_")
        split = next((("_".join(parts[:i]), "_".join(parts[i:])) for i in range(1, len(parts))
                      if "_".join(parts[:i]) in known and "_".join(parts[i:]) in known), None)
        if split is None:
            continue
        edge = f"{split[0]}->{split[1]}"
        if edge not in seen:
            seen.add(edge)
            resources.append(Resource(name=edge, kind="edge", attributes={"src": split[0], "dst": split[1]}))
        out.append(pd.DataFrame({"resource": edge, "name": name, "ts": ts,
                                 "value": pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _metrics(day_dir: Path, warnings: list[str]) -> tuple[pd.DataFrame, list[Resource], list[Edge]]:
    frames, resources, edges = [], [], []
    known = {service_of_pod(csv_stem(p).removesuffix("_metric")) for p in list_csv(day_dir / "metric")
             if csv_stem(p).endswith("_metric")}
    for path in list_csv(day_dir / "metric"):
        stem = csv_stem(path)
        if stem == "dependency":
            dep = read_csv(path)
            for src, dst in zip(dep["Source"].astype(str), dep["Target"].astype(str), strict=False):
                is_node = dst.replace(".", "").isdigit()
                edges.append(Edge(src=src, dst=f"node:{dst}" if is_node else dst,
                                  kind=EdgeKind.RUNS_ON if is_node else EdgeKind.CALLS, source=EdgeSource.CONFIG))
            continue
        if stem in _EDGE_TABLES:
            frames.append(_edge_latency(path, _EDGE_TABLES[stem], known, resources, warnings))
            continue
        if not stem.endswith("_metric") and stem != "front_service":
            continue
        df = read_csv(path)
        if "Time" not in df.columns:
            warnings.append(f"{path.name}: no Time column, skipped")
            continue
        ts = _epoch_from_go_time(df["Time"])
        if stem == "front_service":
            resource, kind = "front-service", "probe"
        else:
            resource, kind = service_of_pod(stem.removesuffix("_metric")), "service"
        resources.append(Resource(name=resource, kind=kind, attributes={"pod": stem.removesuffix("_metric")}))
        value_cols = [c for c in df.columns if c not in _META_COLUMNS]
        for c in value_cols:
            v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
            frames.append(pd.DataFrame({"resource": resource, "name": c, "ts": ts, "value": v}))
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(metrics):
        metrics = metrics[np.isfinite(metrics["ts"]) & np.isfinite(metrics["value"])]
    return metrics, resources, edges


def _inner_log(raw: str) -> str:
    try:
        return str(json.loads(raw).get("log", raw)).rstrip("\n")
    except (json.JSONDecodeError, AttributeError, TypeError):
        return str(raw)


def _logs(folder: Path, warnings: list[str]) -> pd.DataFrame:
    frames = []
    for path in list_csv(folder):
        df = read_csv(path, bad_lines=warnings, dtype=str, keep_default_na=False)
        if df.empty:
            continue
        need = {"TimeUnixNano", "PodName", "Log"}
        if not need <= set(df.columns):
            raise InputError(f"{path}: not a Nezha log file (needs columns {sorted(need)})")
        body = [_inner_log(x) for x in df["Log"]]
        frames.append(pd.DataFrame({
            "resource": [service_of_pod(p) for p in df["PodName"]],
            "ts": pd.to_numeric(df["TimeUnixNano"], errors="coerce").to_numpy() / 1e9,
            "level": [level_of(b) for b in body],
            "body": body,
            "trace_id": df.get("TraceID", ""),
            "span_id": df.get("SpanID", ""),
        }))
    return pd.concat(frames, ignore_index=True).dropna(subset=["ts"]) if frames else pd.DataFrame()


def _spans(folder: Path, warnings: list[str]) -> pd.DataFrame:
    frames = []
    for path in list_csv(folder):
        df = read_csv(path, bad_lines=warnings, dtype={"TraceID": str, "SpanID": str, "ParentID": str, "PodName": str,
                                   "OperationName": str})
        if df.empty:
            continue
        need = {"TraceID", "SpanID", "ParentID", "PodName", "OperationName", "StartTimeUnixNano", "Duration"}
        if not need <= set(df.columns):
            raise InputError(f"{path}: not a Nezha trace file (needs columns {sorted(need)})")
        parent = df["ParentID"].fillna("").astype(str)
        frames.append(pd.DataFrame({
            "trace_id": df["TraceID"].astype(str), "span_id": df["SpanID"].astype(str),
            "parent_id": parent.where(parent != "root", ""),
            "resource": [service_of_pod(p) for p in df["PodName"].astype(str)],
            "operation": df["OperationName"].astype(str),
            "start": pd.to_numeric(df["StartTimeUnixNano"], errors="coerce").to_numpy() / 1e9,
            "duration_ms": pd.to_numeric(df["Duration"], errors="coerce").to_numpy() / 1e3,
            "error": False,
        }))
    return pd.concat(frames, ignore_index=True).dropna(subset=["start", "duration_ms"]) if frames else pd.DataFrame()


def load_day(w: TelemetryWriter, space: str, day_dir: Path, baseline_dir: Path, cases: list[Case]) -> list[str]:
    warnings: list[str] = []
    metrics, resources, edges = _metrics(day_dir, warnings)
    if metrics.empty:
        raise InputError(f"{day_dir}: no metric files found")
    w.metrics(space, metrics)
    all_spans = []
    for sub, what in (("log", "logs"), ("trace", "spans")):
        folder = day_dir / sub
        if not folder.is_dir() or not list_csv(folder):
            warnings.append(f"{dataset_of(day_dir)}: no {sub} files; investigations use metrics only")
            continue
        present = {csv_stem(p)[:5] for p in list_csv(folder)}
        missing = [c for c in cases
                   if not {f"{c.alert.at + timedelta(minutes=k):%H_%M}" for k in range(3)} & present]
        if missing:
            warnings.append(f"{dataset_of(day_dir)}: {len(missing)} of {len(cases)} cases have no {sub} "
                            f"file in their window (e.g. {missing[0].alert.at:%H:%M:%S})")
        frame = _logs(folder, warnings) if sub == "log" else _spans(folder, warnings)
        getattr(w, what)(space, frame)
        if sub == "trace":
            all_spans.append(frame)
    if baseline_dir.is_dir():
        starts, ends = [], []
        for sub, what in (("log", "logs"), ("trace", "spans")):
            folder = baseline_dir / sub
            if not list_csv(folder):
                continue
            frame = _logs(folder, warnings) if sub == "log" else _spans(folder, warnings)
            if frame.empty:
                continue
            getattr(w, what)(space, frame)
            col = "ts" if sub == "log" else "start"
            starts.append(float(frame[col].min()))
            ends.append(float(frame[col].max()))
            if sub == "trace":
                all_spans.append(frame)
        if starts:
            w.baseline(space, min(starts), max(ends), note="construct_data: fault-free baseline")
    else:
        warnings.append(f"{dataset_of(day_dir)}: no construct_data baseline; using pre-incident windows")
    spans = pd.concat(all_spans, ignore_index=True) if all_spans else pd.DataFrame()
    seen = {r.name for r in resources}
    edges = edges + call_edges(spans)
    for e in edges:
        for n in (e.src, e.dst):
            if n not in seen:
                seen.add(n)
                resources.append(Resource(name=n, kind="node" if n.startswith("node:") else "service"))
    w.topology(space, Topology(resources=resources, edges=edges))
    for c in cases:
        w.alert(space, c.alert)
    for msg in warnings:
        log.warning(msg)
    return warnings


def dataset_of(day_dir: Path) -> str:
    return f"nezha/{_system_name(day_dir)}/{day_dir.name}"
