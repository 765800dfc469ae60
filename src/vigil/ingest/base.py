"""What every importer produces: recordings (one space's worth of telemetry) and the cases in them.

A ``Case`` carries what a real alert would give (``alert``) and, separately, the ground-truth
``label``. Only the benchmark reads labels; the engine and the agent never see them."""

from __future__ import annotations

import gzip
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vigil.errors import InputError
from vigil.frames import level_of, service_of_pod  # noqa: F401  (re-exported for importers)
from vigil.model import Alert, FaultKind
from vigil.store.telemetry import TelemetryWriter

log = logging.getLogger("vigil.ingest")


@dataclass(frozen=True)
class Label:
    """Ground truth of a recorded case: for the benchmark only."""

    resource: str
    fault: str = ""
    fault_kind: FaultKind | None = None


@dataclass
class Case:
    id: str
    dataset: str
    alert: Alert
    label: Label | None = None


@dataclass
class Recording:
    """One importable unit: its telemetry goes into one space. ``load`` writes it inside a transaction
    and returns warnings (missing files and the like)."""

    format: str
    dataset: str
    path: Path
    name: str
    cases: list[Case]
    loader: Callable[[TelemetryWriter, str], list[str]] = field(repr=False)

    def load(self, writer: TelemetryWriter, space: str) -> list[str]:
        return self.loader(writer, space)


# -- helpers shared by importers ----------------------------------------------------------------
def find_csv(folder: Path, stem: str) -> Path | None:
    """``NAME.csv`` or ``NAME.csv.gz``: the recordings ship either."""
    for suffix in (".csv", ".csv.gz"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def csv_stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_csv(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz")))


def read_csv(path: Path, bad_lines: list[str] | None = None, **kwargs) -> pd.DataFrame:
    """Read a CSV (plain or gzip) with a one-line error on malformed input. With ``bad_lines`` given,
    rows with the wrong number of fields are skipped and reported there instead of failing the file."""
    if bad_lines is not None:
        kwargs["on_bad_lines"] = "warn"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            if path.name.endswith(".gz"):
                with gzip.open(path, "rb") as fh:
                    df = pd.read_csv(io.BytesIO(fh.read()), **kwargs)
            else:
                df = pd.read_csv(path, **kwargs)
        if bad_lines is not None:
            skipped = sum(str(w.message).count("Skipping line") or 1 for w in caught
                          if issubclass(w.category, pd.errors.ParserWarning))
            if skipped:
                bad_lines.append(f"{path.name}: skipped {skipped} malformed row(s)")
        return df
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError,
            ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read CSV ({first})") from None


# Fault names of the chaos-injection benchmarks (RCD, RCAEval) and the fault kind each one is.
# f1..f5 are RCAEval's code-level faults (injected exceptions and bugs).
CHAOS_FAULT_KINDS = {
    "cpu": FaultKind.CPU, "mem": FaultKind.MEMORY, "memory": FaultKind.MEMORY, "disk": FaultKind.DISK,
    "delay": FaultKind.NETWORK_DELAY, "loss": FaultKind.NETWORK_LOSS, "socket": FaultKind.NETWORK_LOSS,
    "hog": FaultKind.CPU, "cpu-hog": FaultKind.CPU, "leak": FaultKind.MEMORY, "memory-leak": FaultKind.MEMORY,
    "pod-failure": FaultKind.POD_FAILURE, "pod_failure": FaultKind.POD_FAILURE, "kill": FaultKind.POD_FAILURE,
    "pod-kill": FaultKind.POD_FAILURE, "pause": FaultKind.POD_FAILURE,
    **{f"f{i}": FaultKind.ERROR for i in range(1, 6)},
}


def _unit_divisor(v: np.ndarray) -> float:
    """Epoch numbers in s, ms, µs or ns, told apart by magnitude (the 1970s are not recorded)."""
    finite = np.abs(v[np.isfinite(v)])
    mag = float(np.median(finite)) if len(finite) else 0.0
    for limit, div in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
        if mag >= limit:
            return div
    return 1.0


def epoch_numbers(values) -> np.ndarray:
    """Numeric epoch times (s/ms/µs/ns) as epoch seconds; unparseable values become NaN."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return v / _unit_divisor(v)


def epoch_seconds(values, what: str) -> np.ndarray:
    """A time column as epoch seconds: numbers (s, ms, µs or ns) or datetime strings (naive ones are
    UTC). Raises InputError naming ``what`` when a value is neither."""
    s = pd.Series(values)
    num = pd.to_numeric(s, errors="coerce")
    if len(s) and num.notna().all():
        v = num.to_numpy(dtype=float)
        return v / _unit_divisor(v)
    dt = pd.to_datetime(s.astype(object).where(s.notna(), None), utc=True, errors="coerce", format="mixed")
    unread = dt.isna().to_numpy()
    bad = s[unread & num.isna().to_numpy()] if (unread & num.isna().to_numpy()).any() else s[unread]
    if len(bad):
        shown = "" if pd.isna(bad.iloc[0]) else str(bad.iloc[0])
        raise InputError(f"{what}: unreadable time value {shown!r} (data row {bad.index[0] + 1})")
    return (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)


def split_metric_columns(columns, services=()) -> dict[str, tuple[str, str]]:
    """``<service>_<metric>`` column names to (resource, metric name). Service names may hold '-' and
    metric names '_' (``front-end_lat_90``), so the resource is the longest known service the column
    starts with; known services are ``services`` plus every column's part before its first '_'."""
    cols = [str(c) for c in columns]
    known = {c.split("_", 1)[0] for c in cols} | {s for s in services if s}
    by_length = sorted(known, key=len, reverse=True)
    out = {}
    for c in cols:
        res = next((s for s in by_length if c.startswith(s + "_")), None)
        if res is None:
            res = c.split("_", 1)[0]
        out[c] = (res, c[len(res) + 1:] or "value")
    return out


def wide_metrics(df: pd.DataFrame, path: Path, services=(), ts: np.ndarray | None = None) -> pd.DataFrame:
    """A ``time`` + ``<service>_<metric>`` table (RCD, RCAEval) in long form: resource, name, ts, value.
    ``ts`` overrides the parsed ``time`` column (e.g. shifted times)."""
    if "time" not in df.columns:
        raise InputError(f"{path}: no 'time' column (expected time plus <service>_<metric> columns)")
    if ts is None:
        ts = epoch_seconds(df["time"], str(path))
    cols = [c for c in df.columns if c != "time" and not str(c).startswith("Unnamed:")]
    if not cols:
        raise InputError(f"{path}: no metric columns besides 'time'")
    names = split_metric_columns(cols, services)
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    n = len(df)
    long = pd.DataFrame({
        "resource": np.repeat([names[str(c)][0] for c in cols], n),
        "name": np.repeat([names[str(c)][1] for c in cols], n),
        "ts": np.tile(np.asarray(ts, dtype=float), len(cols)),
        "value": values.ravel(order="F"),
    })
    long = long[np.isfinite(long["value"].to_numpy()) & np.isfinite(long["ts"].to_numpy())]
    if long.empty:
        raise InputError(f"{path}: no numeric metric values")
    return long.reset_index(drop=True)


def discover(paths: list[Path]) -> list[Recording]:
    """Find every recording under the given folders, in any supported layout."""
    from vigil.ingest import nezha, petshop, rcaeval, rcd

    recordings: list[Recording] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: no such file or directory")
        if not root.is_dir():
            raise InputError(f"{root}: not a folder (give the folder of a recording)")
        found: list[Recording] = []
        for module in (nezha, petshop, rcd, rcaeval):
            found.extend(module.discover(root))
        if not found:
            raise InputError(f"{root}: no recording in a known format (nezha, petshop, rcd, rcaeval) found")
        recordings.extend(found)
    seen: set[tuple[str, Path]] = set()
    unique = []
    for r in recordings:
        key = (r.format, r.path.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def walk_dirs(root: Path, max_depth: int = 8):
    """Yield folders under root (root included), not following links, skipping hidden ones."""
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        yield d
        if depth >= max_depth:
            continue
        try:
            children = sorted((c for c in d.iterdir() if c.is_dir() and not c.is_symlink()
                               and not c.name.startswith(".")), reverse=True)
        except OSError:
            continue
        stack.extend((c, depth + 1) for c in children)
