"""What every importer produces: recordings (one space's worth of telemetry) and the cases in them.

A ``Case`` carries what a real alert would give (``alert``) and, separately, the ground-truth
``label``. Only the benchmark reads labels; the engine and the agent never see them."""

from __future__ import annotations

import gzip
import io
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vigil.errors import InputError
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


_POD_SUFFIX = re.compile(r"-[0-9a-f]{5,10}-[0-9a-z]{5}$")
_POD_SUFFIX_SHORT = re.compile(r"-[0-9a-z]{5}$")


def service_of_pod(pod: str) -> str:
    """Kubernetes pod name to its workload: strip ``-<replicaset hash>-<id>`` (or a lone ``-<id>``)."""
    s = _POD_SUFFIX.sub("", pod)
    return s if s != pod else pod


_LEVEL = re.compile(r"\b(FATAL|CRITICAL|SEVERE|ERROR|ERR|WARNING|WARN|INFO|DEBUG|TRACE)\b")
_LEVEL_NORMAL = {"FATAL": "ERROR", "CRITICAL": "ERROR", "SEVERE": "ERROR", "ERR": "ERROR", "WARNING": "WARN"}


def level_of(text: str) -> str:
    """The log level a line states about itself (first level word in its first 200 characters)."""
    m = _LEVEL.search(text[:200].upper()) if text else None
    if not m:
        return ""
    return _LEVEL_NORMAL.get(m.group(1), m.group(1))


# -- discovery ----------------------------------------------------------------------------------
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
