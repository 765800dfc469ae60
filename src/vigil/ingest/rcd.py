"""RCD layout (azamikram/rcd, and RCAEval's copies of it): ``<dataset>/<service>-<fault>/<run>/`` holding
``normal.csv`` and ``anomalous.csv`` (or ``.csv.gz``). Each file is a ``time`` column plus
``<service>_<metric>`` columns (``carts_cpu``, ``front-end_mem``, ``orders_lat_90``).

Each run is its own recording with one case. The normal rows are stored as a marked fault-free
baseline and the anomalous rows as the incident; the alert time is the first anomalous timestamp.
Times are epoch numbers or datetime strings; when the two files overlap in time, or are plain row
indices, the anomalous rows are shifted to follow the normal ones. The ``<service>-<fault>`` folder
name is the label (split on its last '-': ``front-end-cpu`` is service ``front-end``, fault ``cpu``),
for the benchmark only: alerts and stored telemetry never carry it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from vigil.errors import InputError
from vigil.ingest.base import (
    CHAOS_FAULT_KINDS,
    Case,
    Label,
    Recording,
    epoch_seconds,
    find_csv,
    log,
    read_csv,
    walk_dirs,
    wide_metrics,
)
from vigil.model import Alert, Resource, Topology
from vigil.store.telemetry import TelemetryWriter

# Epoch seconds below this (1973) are not wall-clock times: row indices or seconds since a start.
_RELATIVE_BELOW = 1e8


def discover(root: Path) -> list[Recording]:
    out = []
    for d in walk_dirs(root):
        if find_csv(d, "normal") and find_csv(d, "anomalous"):
            out.append(_recording(d))
    return out


def _case_dir(run_dir: Path) -> Path:
    """``<service>-<fault>/<run>`` (runs are numbered); a ``<service>-<fault>`` folder holding the files
    itself is its own single run."""
    return run_dir if "-" in run_dir.name else run_dir.parent


def parse_label(folder: str) -> Label | None:
    """``front-end-cpu`` -> service ``front-end``, fault ``cpu``."""
    service, sep, fault = folder.rpartition("-")
    if not sep or not service or not fault:
        return None
    return Label(resource=service, fault=fault, fault_kind=CHAOS_FAULT_KINDS.get(fault.lower()))


def _times(path: Path, df: pd.DataFrame | None = None) -> np.ndarray:
    if df is None:
        df = read_csv(path, usecols=lambda c: c == "time")
    if "time" not in df.columns:
        raise InputError(f"{path}: no 'time' column (expected time plus <service>_<metric> columns)")
    if df.empty:
        raise InputError(f"{path}: no rows")
    return epoch_seconds(df["time"], str(path))


def _step(ts: np.ndarray) -> float:
    d = np.diff(np.sort(ts))
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0


def align(normal: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, bool]:
    """The anomalous times, shifted to start one step after the last normal row unless they already
    come after it as wall-clock times. Returns (times, shifted)."""
    relative = min(normal.min(), anomalous.min()) < _RELATIVE_BELOW
    if not relative and anomalous.min() > normal.max():
        return anomalous, False
    start = normal.max() + _step(normal)
    return anomalous - anomalous.min() + start, True


def _recording(run_dir: Path) -> Recording:
    case_dir = _case_dir(run_dir)
    dataset = f"rcd/{case_dir.parent.name}"
    normal_path, anomalous_path = find_csv(run_dir, "normal"), find_csv(run_dir, "anomalous")
    normal_ts = _times(normal_path)
    anomalous_ts, _ = align(normal_ts, _times(anomalous_path))
    rel = case_dir.name if case_dir == run_dir else f"{case_dir.name}/{run_dir.name}"
    # The alert id must not give the label away (the folder name is the label): hash the path.
    digest = hashlib.sha1(f"{dataset}/{rel}".encode()).hexdigest()[:10]
    alert = Alert(id=f"rcd-{digest}", title="incident reported",
                  at=datetime.fromtimestamp(float(anomalous_ts.min()), UTC))
    case = Case(id=f"{dataset}/{rel}", dataset=dataset, alert=alert, label=parse_label(case_dir.name))
    return Recording(format="rcd", dataset=dataset, path=run_dir, name=f"{dataset}/{rel}".replace("/", "-"),
                     cases=[case], loader=lambda w, space: load_run(w, space, run_dir, case))


def load_run(w: TelemetryWriter, space: str, run_dir: Path, case: Case) -> list[str]:
    warnings: list[str] = []
    normal_path, anomalous_path = find_csv(run_dir, "normal"), find_csv(run_dir, "anomalous")
    normal_df, anomalous_df = read_csv(normal_path), read_csv(anomalous_path)
    normal_ts = _times(normal_path, normal_df)
    anomalous_ts, shifted = align(normal_ts, _times(anomalous_path, anomalous_df))
    if shifted:
        warnings.append(f"{case.id}: anomalous times do not follow the normal ones (they overlap, come first "
                        f"or are row indices); anomalous rows shifted to follow the normal rows")
    # The folder's service is a known service name so that columns split on the right '_'; this
    # only decides how column names are cut, the label itself is not stored.
    services = [case.label.resource] if case.label else []
    normal = wide_metrics(normal_df, normal_path, services, ts=normal_ts)
    anomalous = wide_metrics(anomalous_df, anomalous_path, services, ts=anomalous_ts)
    w.metrics(space, normal)
    w.metrics(space, anomalous)
    w.baseline(space, float(normal_ts.min()), float(normal_ts.max()), note="normal.csv: fault-free run")
    names = sorted(set(normal["resource"]) | set(anomalous["resource"]))
    w.topology(space, Topology(resources=[Resource(name=n, kind="service") for n in names]))
    w.alert(space, case.alert)
    for msg in warnings:
        log.warning(msg)
    return warnings
