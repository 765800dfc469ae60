"""Argument templates and result parsers for MCP tools mapped to source roles.

Templates are plain JSON values whose strings may hold ``{placeholder}``s (``{{`` and ``}}`` are literal
braces, so a PromQL selector is written ``up{{job="api"}}``). A string that is exactly one placeholder
is replaced by the value itself (a number stays a number); otherwise the value is formatted into the
string. No format-spec or attribute access: a template cannot reach anything but the given values.

Parsers turn a tool's output, which is untrusted data, into frames with ``FRAME_COLUMNS``:
``json`` (a list of records, field mapping), ``prometheus`` (a Prometheus ``query_range`` matrix) and
``git-log`` (the text ``mcp-server-git``'s ``git_log`` tool returns)."""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from vigil.sources.base import FRAME_COLUMNS

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

TIME_PLACEHOLDERS = frozenset({"start", "end", "start_iso", "end_iso", "start_ms", "end_ms", "duration_s"})
AGENT_PLACEHOLDERS = TIME_PLACEHOLDERS | {"resource", "fault_kind", "rank", "onset", "onset_iso"}


def placeholders(template: Any) -> set[str]:
    """Every placeholder name used anywhere in ``template``."""
    if isinstance(template, str):
        return {m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)}
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(placeholders(v) for v in template)) if template else set()
    return set()


def render(template: Any, values: dict[str, Any]) -> Any:
    """``template`` with its placeholders replaced from ``values`` (a missing one is a ``KeyError``)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and whole.group(1):
            return values[whole.group(1)]

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "{{":
                return "{"
            if m.group(0) == "}}":
                return "}"
            return str(values[m.group(1)])
        return _PLACEHOLDER.sub(sub, template)
    if isinstance(template, dict):
        return {k: render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values) for v in template]
    return template


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_values(start: float, end: float) -> dict[str, Any]:
    return {"start": round(start, 3), "end": round(end, 3), "start_iso": iso(start), "end_iso": iso(end),
            "start_ms": int(start * 1000), "end_ms": int(end * 1000), "duration_s": round(end - start, 3)}


# -- parsing helpers --------------------------------------------------------------------------------
def dig(value: Any, path: str) -> Any:
    """``value`` at a dotted ``path`` (``data.result``; list indices as numbers); ``""`` is the value."""
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def to_epoch(value: Any) -> float:
    """Epoch seconds from epoch seconds, epoch milliseconds (> 1e11) or an ISO 8601 string."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        v = float(value)
    else:
        text = str(value).strip()
        try:
            v = float(text)
        except ValueError:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(v):
        raise ValueError(f"not a timestamp: {value!r}")
    return v / 1000.0 if abs(v) > 1e11 else v


def _frame(role: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    cols = FRAME_COLUMNS[role]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)


_DEFAULTS = {"logs": {"level": "", "body": "", "trace_id": "", "span_id": ""},
             "changes": {"kind": "change", "description": "", "author": "", "detail": ""},
             "spans": {"parent_id": "", "operation": "", "error": False}}


def parse_json_records(role: str, data: Any, records: str, fields: dict[str, str],
                       defaults: dict[str, Any]) -> pd.DataFrame:
    """Records (a JSON list of objects at ``records``) -> a frame. ``fields`` maps a frame column to a
    record field (dotted path); a column not mapped takes ``defaults``, else its own name as the field."""
    rows_in = dig(data, records)
    if not isinstance(rows_in, list):
        raise ValueError(f"expected a list of records at {records or 'the top level'!r}, "
                         f"got {type(rows_in).__name__}")
    cols = FRAME_COLUMNS[role]
    base = {**_DEFAULTS.get(role, {}), **defaults}
    out = []
    for rec in rows_in:
        if not isinstance(rec, dict):
            continue
        row: dict[str, Any] = {}
        for c in cols:
            v = dig(rec, fields[c]) if c in fields else rec.get(c)
            if v is None and c in base:
                v = base[c]
            row[c] = v
        try:
            for c in ("ts", "start"):
                if c in cols:
                    row[c] = to_epoch(row[c])
            if role == "metrics":
                row["value"] = float(row["value"])
            if role == "spans":
                row["duration_ms"] = float(row["duration_ms"])
        except (TypeError, ValueError):
            continue                    # an unusable record is skipped, not fatal
        if row.get("resource") in (None, ""):
            continue
        row["resource"] = str(row["resource"])
        out.append(row)
    return _frame(role, out)


def parse_prometheus(data: Any, resource_label: str, name_label: str,
                     defaults: dict[str, Any]) -> pd.DataFrame:
    """A Prometheus ``query_range`` answer (``{"status", "data": {"resultType": "matrix", "result"}}`` or
    just its ``data``) -> metrics. Per the Prometheus HTTP API, a value is ``[<unix seconds>, "<number>"]``."""
    body = data.get("data", data) if isinstance(data, dict) else data
    series = body.get("result") if isinstance(body, dict) else body
    if not isinstance(series, list):
        raise ValueError("expected a Prometheus matrix (data.result)")
    out = []
    for s in series:
        if not isinstance(s, dict):
            continue
        labels = s.get("metric") or {}
        res = labels.get(resource_label) or defaults.get("resource")
        if not res:
            continue
        name = labels.get(name_label) or defaults.get("name") or "value"
        points = s.get("values") or ([s["value"]] if "value" in s else [])
        for p in points:
            try:
                v = float(p[1])
                out.append({"resource": str(res), "name": str(name), "ts": float(p[0]), "value": v})
            except (TypeError, ValueError, IndexError):
                continue
    return _frame("metrics", out)


# -- git log (mcp-server-git) -----------------------------------------------------------------------
@dataclass
class Commit:
    sha: str
    author: str
    ts: float
    message: str


_COMMIT = re.compile(r"^Commit: ([0-9a-f]{7,64})\nAuthor: (.*)\nDate: (.*)\nMessage: ", re.M)


def parse_git_log(text: str) -> list[Commit]:
    """Commits from ``git_log`` output: blocks of ``Commit: <sha>``, ``Author: <name>``,
    ``Date: <datetime>`` (Python ``str(datetime)`` with its offset) and ``Message: <full message>``."""
    out = []
    heads = list(_COMMIT.finditer(text))
    for i, m in enumerate(heads):
        body_end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        try:
            ts = to_epoch(m.group(3).strip().replace(" ", "T", 1))
        except ValueError:
            continue
        out.append(Commit(m.group(1), m.group(2).strip(), ts, text[m.end():body_end].strip()))
    return out


_DIFF_PATH = re.compile(r"^(?:\+\+\+ b/|--- a/)(.+)$", re.M)


def changed_paths(show_text: str) -> set[str]:
    """File paths a ``git_show`` output (``--- a/<path>`` / ``+++ b/<path>`` headers) touches."""
    return {m.group(1).strip() for m in _DIFF_PATH.finditer(show_text)}


def resources_for(commit: Commit, paths: set[str] | None, globs: dict[str, str],
                  message_pattern: str | None, fixed: str | None) -> list[str]:
    """The resources a commit is about: by path globs (first matching glob per file), else by a
    message regex's ``resource`` group (e.g. the conventional-commit scope), else a fixed resource."""
    found: list[str] = []
    if paths and globs:
        for p in sorted(paths):
            for glob, res in globs.items():
                if fnmatch.fnmatch(p, glob):
                    if res not in found:
                        found.append(res)
                    break
    if not found and message_pattern:
        m = re.search(message_pattern, commit.message)
        if m and m.groupdict().get("resource"):
            found.append(m.group("resource"))
    if not found and fixed:
        found.append(fixed)
    return found


def commits_frame(commits: list[tuple[Commit, list[str]]], kind: str) -> pd.DataFrame:
    rows = [{"resource": res, "ts": c.ts, "kind": kind,
             "description": f"{c.sha[:12]} {c.message.splitlines()[0] if c.message else ''}".strip(),
             "author": c.author} for c, resources in commits for res in resources]
    return _frame("changes", rows)
