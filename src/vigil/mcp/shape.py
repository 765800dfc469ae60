"""Keep tool results small and JSON-serialisable: an agent reads every byte we return, and a client
may cap what it accepts. Times become ISO 8601 strings, long strings and lists are cut (saying so),
and a final guard halves the longest list until the whole answer fits ``MAX_BYTES``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from vigil.errors import InputError

MAX_BYTES = 60_000          # one tool answer, serialised
MAX_STR = 500               # one string inside it
MAX_LIST = 50               # one nested list (evidence details, journal data)
MAX_WINDOW_S = 86_400.0     # telemetry queries span at most a day


def iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        dt = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(ts, float) and not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | float | int | None, what: str) -> datetime | None:
    """ISO 8601 (``2023-01-29T15:42:00Z``) or epoch seconds; None stays None."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return datetime.fromtimestamp(float(text), UTC)
    t = str(text).strip()
    try:
        return datetime.fromtimestamp(float(t), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"cannot read {what} {text!r}: use ISO 8601 (2023-01-29T15:42:00Z) or epoch seconds") \
            from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def number(v: Any) -> Any:
    """A float rounded for reading (NaN/inf become None, which JSON can carry)."""
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return round(v, 4) if abs(v) < 1e6 else round(v, 1)
    return v


def compact(obj: Any, max_list: int = MAX_LIST, max_str: int = MAX_STR, depth: int = 0) -> Any:
    """A JSON-able copy with long strings and lists cut; raw series (lists of points) are summarised
    by their length, since the agent can fetch them with a query tool."""
    if depth > 8:
        return "..."
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k == "series" and isinstance(v, list):
                out["series_points"] = len(v)
                continue
            out[str(k)] = compact(v, max_list, max_str, depth + 1)
        return out
    if isinstance(obj, list | tuple):
        items = [compact(v, max_list, max_str, depth + 1) for v in list(obj)[:max_list]]
        if len(obj) > max_list:
            items.append(f"... {len(obj) - max_list} more")
        return items
    if isinstance(obj, str):
        return obj if len(obj) <= max_str else obj[:max_str] + f"... ({len(obj)} chars)"
    if isinstance(obj, datetime):
        return iso(obj)
    if isinstance(obj, float):
        return number(obj)
    if obj is None or isinstance(obj, bool | int):
        return obj
    if hasattr(obj, "item"):            # numpy scalars
        return compact(obj.item(), max_list, max_str, depth)
    return str(obj)[:max_str]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str, allow_nan=False)


def _longest_list(obj: Any, best: tuple[int, list | None] = (0, None)) -> tuple[int, list | None]:
    if isinstance(obj, list):
        if len(obj) > best[0]:
            best = (len(obj), obj)
        for v in obj:
            best = _longest_list(v, best)
    elif isinstance(obj, dict):
        for v in obj.values():
            best = _longest_list(v, best)
    return best


def bounded(result: dict[str, Any], max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """``result`` cut to fit ``max_bytes`` serialised: the longest list is halved until it fits, and
    ``truncated`` says it happened."""
    for _ in range(64):
        if len(dumps(result)) <= max_bytes:
            return result
        n, lst = _longest_list(result)
        if lst is None or n <= 1:
            break
        del lst[max(1, n // 2):]
        result["truncated"] = True
    if len(dumps(result)) > max_bytes:      # nothing left to halve: say so rather than send it
        return {"truncated": True, "error": f"the answer exceeded {max_bytes} bytes; narrow the query"}
    return result
