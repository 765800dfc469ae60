"""Recovery checks: a mitigation spec's ``verify`` step evaluated on the space's telemetry.

``errors``: the share of the resource's spans that failed over the last ``for_s`` seconds; ``latency``:
their median duration; ``metric``: the median of the named series. Each needs enough data to say
anything (``MIN_SPANS`` spans, ``MIN_POINTS`` points): with less, the answer is "not enough data", not
"recovered"."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from vigil.respond.spec import Verify

MIN_SPANS = 20
MIN_POINTS = 3


def check(v: Verify, source: Any, space: str, now: float | None = None) -> dict[str, Any]:
    end = now if now is not None else time.time()
    start = end - v.for_s
    observed: float | None = None
    samples = 0
    if v.signal in ("errors", "latency"):
        sp = source.spans(space, start, end)
        sp = sp[sp["resource"] == v.resource] if len(sp) else sp
        samples = len(sp)
        if samples >= MIN_SPANS:
            observed = float(sp["error"].astype(bool).mean()) if v.signal == "errors" else \
                float(np.median(sp["duration_ms"].astype(float)))
    else:
        m = source.metrics(space, start, end, resources=[v.resource], names=[v.series])
        samples = len(m)
        if samples >= MIN_POINTS:
            observed = float(np.median(m["value"].astype(float)))
    if observed is None:
        return {"recovered": False, "conclusive": False, "observed": None, "threshold": v.threshold,
                "samples": samples, "window_s": v.for_s, "at": end,
                "message": f"not enough data yet: {samples} {'spans' if v.signal != 'metric' else 'points'} of "
                           f"{v.resource} in the last {v.for_s:g} s"}
    ok = observed <= v.threshold if v.comparison == "<=" else observed >= v.threshold
    shown = f"{observed:.1%}" if v.signal == "errors" else f"{observed:.4g}"
    limit = f"{v.threshold:.1%}" if v.signal == "errors" else f"{v.threshold:.4g}"
    return {"recovered": ok, "conclusive": True, "observed": observed, "threshold": v.threshold, "samples": samples,
            "window_s": v.for_s, "at": end,
            "message": (f"recovered: {v.series} of {v.resource} is {shown} over the last {v.for_s:g} s "
                        f"({v.comparison} {limit}, {samples} samples)") if ok else
                       (f"not recovered: {v.series} of {v.resource} is {shown} over the last {v.for_s:g} s "
                        f"(needs {v.comparison} {limit})")}


def wait_for_recovery(v: Verify, source: Any, space: str, timeout_s: float, interval_s: float = 5.0,
                      sleep=time.sleep, clock=time.time) -> dict[str, Any]:
    """Check after ``for_s`` has passed (the window must hold only post-action data), then every
    ``interval_s`` until recovered or ``timeout_s``; the last answer either way."""
    t0 = clock()
    sleep(v.for_s)
    last = check(v, source, space, clock())
    while not last["recovered"] and clock() - t0 < timeout_s:
        sleep(interval_s)
        last = check(v, source, space, clock())
    return last
