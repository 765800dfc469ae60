"""Telemetry frames: the columns every source returns and the engine reads, and the small normalising
helpers every layer shares (pod names to workloads, log levels, the call edges spans imply).

It depends on nothing in Vigil but the domain model, so sources, importers, the stores and the engine
can all use it without importing each other."""

from __future__ import annotations

import contextlib
import re
import warnings

import pandas as pd

from vigil.model import Edge, EdgeKind, EdgeSource

FRAME_COLUMNS: dict[str, list[str]] = {
    "metrics": ["resource", "name", "ts", "value"],
    "logs": ["resource", "ts", "level", "body", "trace_id", "span_id"],
    "spans": ["trace_id", "span_id", "parent_id", "resource", "operation", "start", "duration_ms", "error"],
    "changes": ["resource", "ts", "kind", "description", "author", "detail"],
}
# Columns a frame may leave out, with the value they take then. A change's ``detail`` is a JSON object
# (as text) with what its source knows besides the description: the revision and the previous one,
# the diff summary, the changed keys (config keys, environment variables), the deployment, ...
OPTIONAL_COLUMNS: dict[str, dict[str, object]] = {"changes": {"detail": ""}}


def conform(kind: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the optional columns of ``kind`` it lacks filled in (a copy only when one is)."""
    fill = {c: v for c, v in OPTIONAL_COLUMNS.get(kind, {}).items() if c not in df.columns}
    return df.assign(**fill) if fill else df


@contextlib.contextmanager
def python_strings():
    """Frames made inside keep strings as plain Python objects (pandas 2's way): the store hands them
    out without converting every string to pandas 3's Arrow-backed type, and the engine's string work
    on them is 10-20 % faster. pandas 3 still offers (and deprecates) the switch; without it this does
    nothing. The option is process-wide: the engine runs in worker processes, the CLI and the benchmark."""
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.filterwarnings("ignore", message=".*future.infer_string.*")
        with contextlib.suppress(KeyError, ValueError, pd.errors.OptionError):
            stack.enter_context(pd.option_context("future.infer_string", False))
        yield


def empty(kind: str) -> pd.DataFrame:
    """An empty frame of one kind, with its columns."""
    return pd.DataFrame(columns=FRAME_COLUMNS[kind])


def call_edges(spans: pd.DataFrame) -> list[Edge]:
    """Service call edges implied by spans: a span whose parent span belongs to another service, weighted
    by the number of such calls."""
    if spans.empty:
        return []
    parents = spans[["span_id", "resource"]].rename(columns={"span_id": "parent_id", "resource": "caller"})
    j = spans[["parent_id", "resource"]].merge(parents, on="parent_id")
    pairs = j[j["caller"] != j["resource"]].groupby(["caller", "resource"]).size()
    return [Edge(src=a, dst=b, kind=EdgeKind.CALLS, source=EdgeSource.TRACES, weight=float(n))
            for (a, b), n in pairs.items()]


_POD_SUFFIX = re.compile(r"-[0-9a-f]{5,10}-[0-9a-z]{5}$")


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
