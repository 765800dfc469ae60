"""RCAEval layout (phamquiluan/RCAEval, suites RE1/RE2/RE3): ``<suite>/<service>_<fault>/<run>/`` holding
``inject_time.txt`` (epoch seconds) and, as ``.csv`` or ``.csv.gz``:

- metrics, a ``time`` (epoch seconds) + ``<service>_<metric>`` table: ``data.csv`` (RE1), or
  ``metrics.csv`` / ``simple_metrics.csv`` (RE2/RE3; the simple one is a subset, ``metrics.csv`` wins);
- optionally ``logs.csv`` (time, timestamp in ns, container_name, message, level, req_path, error);
- optionally ``traces.csv`` (traceID, spanID, parentSpanID, serviceName, operationName, startTime and
  duration in µs, statusCode, ...).

Each run is its own recording with one case. The alert time is the inject time; the data before it
is plain pre-incident history (no marked baseline). Call edges come from the traces when present.
The ``<service>_<fault>`` folder name is the label (split on its last '_'), for the benchmark only."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from vigil.errors import InputError
from vigil.frames import call_edges
from vigil.ingest.base import (
    CHAOS_FAULT_KINDS,
    Case,
    Label,
    Recording,
    epoch_numbers,
    find_csv,
    level_of,
    log,
    read_csv,
    service_of_pod,
    walk_dirs,
    wide_metrics,
)
from vigil.model import Alert, Resource, Topology
from vigil.store.telemetry import TelemetryWriter

# In order of preference: the full RE2/RE3 table, RE1's table, then the subsets.
METRIC_FILES = ("metrics", "data", "simple_metrics", "simple_data")
INJECT_FILE = "inject_time.txt"
_TRUE = {"1", "true", "yes", "y", "t", "error"}


def discover(root: Path) -> list[Recording]:
    out = []
    for d in walk_dirs(root):
        if (d / INJECT_FILE).is_file() and any(find_csv(d, s) for s in (*METRIC_FILES, "logs", "traces")):
            out.append(_recording(d))
    return out


def metrics_file(run_dir: Path) -> Path | None:
    for stem in METRIC_FILES:
        p = find_csv(run_dir, stem)
        if p is not None:
            return p
    return None


def _case_dir(run_dir: Path) -> Path:
    """``<service>_<fault>/<run>`` (runs are numbered); a case folder holding the files itself is its own run."""
    return run_dir if "_" in run_dir.name else run_dir.parent


def parse_label(folder: str) -> Label | None:
    """``ts-auth-service_delay`` -> service ``ts-auth-service``, fault ``delay``."""
    service, sep, fault = folder.rpartition("_")
    if not sep or not service or not fault:
        return None
    return Label(resource=service, fault=fault, fault_kind=CHAOS_FAULT_KINDS.get(fault.lower()))


def read_inject_time(path: Path) -> float:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        value = float(epoch_numbers([float(text.split()[0])])[0])
    except (ValueError, IndexError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{path}: not an epoch-seconds inject time ({text[:40]!r})")
    return value


def _recording(run_dir: Path) -> Recording:
    case_dir = _case_dir(run_dir)
    dataset = f"rcaeval/{case_dir.parent.name}"
    at = read_inject_time(run_dir / INJECT_FILE)
    rel = case_dir.name if case_dir == run_dir else f"{case_dir.name}/{run_dir.name}"
    # The alert id must not give the label away (the folder name is the label): hash the path.
    digest = hashlib.sha1(f"{dataset}/{rel}".encode()).hexdigest()[:10]
    alert = Alert(id=f"rcaeval-{digest}", title="incident reported", at=datetime.fromtimestamp(at, UTC))
    case = Case(id=f"{dataset}/{rel}", dataset=dataset, alert=alert, label=parse_label(case_dir.name))
    return Recording(format="rcaeval", dataset=dataset, path=run_dir, name=f"{dataset}/{rel}".replace("/", "-"),
                     cases=[case], loader=lambda w, space: load_run(w, space, run_dir, case))


def _is_true(x: str) -> bool:
    return x.strip().lower() in _TRUE


def read_logs(path: Path, warnings: list[str]) -> pd.DataFrame:
    df = read_csv(path, bad_lines=warnings, dtype=str, keep_default_na=False)
    if df.empty:
        return pd.DataFrame()
    cols = set(df.columns)
    if not {"container_name", "message", "timestamp"} <= cols:
        raise InputError(f"{path}: not an RCAEval log file (needs columns timestamp, container_name, message)")
    ts = epoch_numbers(df["timestamp"])    # ns; the ``time`` column is only a display string ("17:47")
    body = df["message"].astype(str).tolist()
    stated = df["level"].astype(str).tolist() if "level" in cols else [""] * len(df)
    error = df["error"].astype(str).tolist() if "error" in cols else [""] * len(df)
    level = [level_of(lv) or level_of(b) or ("ERROR" if _is_true(e) else "")
             for lv, b, e in zip(stated, body, error, strict=True)]
    out = pd.DataFrame({
        "resource": [service_of_pod(c) for c in df["container_name"].astype(str)],
        "ts": ts, "level": level, "body": body,
        "trace_id": df["trace_id"].astype(str) if "trace_id" in cols else "",
        "span_id": df["span_id"].astype(str) if "span_id" in cols else "",
    })
    dropped = int((~np.isfinite(ts)).sum())
    if dropped:
        warnings.append(f"{path.name}: skipped {dropped} row(s) without a readable timestamp")
    return out[np.isfinite(ts)].reset_index(drop=True)


def _span_error(status: pd.Series) -> np.ndarray:
    """OpenTelemetry status 2 (ERROR), an HTTP 5xx, or a status text naming an error."""
    text = status.fillna("").astype(str).str.strip()
    num = pd.to_numeric(text, errors="coerce")
    return ((num == 2) | (num >= 500) | text.str.contains("error", case=False)).to_numpy(dtype=bool)


def read_spans(path: Path, warnings: list[str]) -> pd.DataFrame:
    df = read_csv(path, bad_lines=warnings, dtype=str, keep_default_na=False)
    if df.empty:
        return pd.DataFrame()
    cols = set(df.columns)
    need = {"traceID", "spanID", "serviceName", "duration"}
    if not need <= cols or not cols & {"startTime", "startTimeMillis"}:
        raise InputError(f"{path}: not an RCAEval trace file (needs columns traceID, spanID, serviceName, "
                         f"startTime, duration)")
    start = epoch_numbers(df["startTime"]) if "startTime" in cols else np.full(len(df), np.nan)
    if "startTimeMillis" in cols:                       # fills rows (or files) without startTime
        start = np.where(np.isfinite(start), start, epoch_numbers(df["startTimeMillis"]))
    duration_ms = pd.to_numeric(df["duration"], errors="coerce").to_numpy(dtype=float) / 1e3   # µs
    op = df["operationName"] if "operationName" in cols else df.get("methodName", pd.Series([""] * len(df)))
    out = pd.DataFrame({
        "trace_id": df["traceID"].astype(str), "span_id": df["spanID"].astype(str),
        "parent_id": df["parentSpanID"].astype(str) if "parentSpanID" in cols else "",
        "resource": [service_of_pod(s) for s in df["serviceName"].astype(str)],
        "operation": op.astype(str).to_numpy(),
        "start": start, "duration_ms": duration_ms,
        "error": _span_error(df["statusCode"]) if "statusCode" in cols else False,
    })
    ok = np.isfinite(out["start"].to_numpy()) & np.isfinite(out["duration_ms"].to_numpy())
    if (~ok).any():
        warnings.append(f"{path.name}: skipped {int((~ok).sum())} span(s) without a readable start or duration")
    return out[ok].reset_index(drop=True)


def load_run(w: TelemetryWriter, space: str, run_dir: Path, case: Case) -> list[str]:
    warnings: list[str] = []
    names: set[str] = set()
    mpath = metrics_file(run_dir)
    if mpath is None:
        warnings.append(f"{case.id}: no metrics file ({', '.join(s + '.csv' for s in METRIC_FILES)}); "
                        f"investigations use logs and traces only")
    else:
        # The folder's service is a known service name so that columns split on the right '_'; this
        # only decides how column names are cut, the label itself is not stored.
        services = [case.label.resource] if case.label else []
        metrics = wide_metrics(read_csv(mpath), mpath, services)
        w.metrics(space, metrics)
        names |= set(metrics["resource"])
    lpath = find_csv(run_dir, "logs")
    if lpath is None:
        warnings.append(f"{case.id}: no logs.csv; investigations use no logs")
    else:
        logs = read_logs(lpath, warnings)
        w.logs(space, logs)
        if not logs.empty:
            names |= set(logs["resource"])
    tpath = find_csv(run_dir, "traces")
    spans = pd.DataFrame()
    if tpath is None:
        warnings.append(f"{case.id}: no traces.csv; topology has no call edges")
    else:
        spans = read_spans(tpath, warnings)
        if spans.empty:
            warnings.append(f"{case.id}: {tpath.name} has no spans; topology has no call edges")
        w.spans(space, spans)
        if not spans.empty:
            names |= set(spans["resource"])
    edges = call_edges(spans)
    for e in edges:
        names |= {e.src, e.dst}
    w.topology(space, Topology(resources=[Resource(name=n, kind="service") for n in sorted(names)], edges=edges))
    w.alert(space, case.alert)
    for msg in warnings:
        log.warning(msg)
    return warnings
