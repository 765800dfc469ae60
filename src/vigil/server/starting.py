"""Manual starting points: find where to start an investigation inside a time window.

- ``latest-alarm``: the latest alert received (or recorded) in the space inside the window;
- ``high-cpu``: the CPU series with the clearest rise in the window, at the time it rose;
- ``error-rate-spike``: the time the error count (failed spans plus ERROR/FATAL logs) stepped up;
- ``free-text``: the time given (``at``, default the window's end) with the operator's text.

Rises are located with a single change point: the split of the series that maximises the
standardised difference of the means after and before it; a rise counts when that difference is at
least ``MIN_Z`` robust standard deviations of the part before it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from vigil.engine.roles import category as categorize
from vigil.errors import InputError
from vigil.model import Alert, JournalEntry, JournalKind, StartingPoint, Trigger, TriggerKind, Window
from vigil.sources.base import TelemetrySource
from vigil.store.state import StateStore

MIN_Z = 3.0
MIN_POINTS = 6


@dataclass
class Start:
    onset: datetime
    alert: Alert | None = None
    resource: str | None = None
    note: str = ""
    data: dict = field(default_factory=dict)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def change_point(ts: np.ndarray, v: np.ndarray, min_scale: float = 1e-6) -> tuple[float, float] | None:
    """(time of the rise, its robust z) for the strongest upward mean shift in the series, or None.
    ``min_scale`` floors the spread of the part before the rise (1 for counts: Poisson noise)."""
    order = np.argsort(ts)
    ts, v = ts[order], v[order]
    n = len(v)
    if n < MIN_POINTS:
        return None
    c = np.cumsum(v)
    k = np.arange(2, n - 1)                     # at least two points on each side
    before = c[k - 1] / k
    after = (c[-1] - c[k - 1]) / (n - k)
    stat = (after - before) * np.sqrt(k * (n - k) / n)
    i = int(np.argmax(stat))
    split = int(k[i])
    base = v[:split]
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med))) * 1.4826
    scale = max(mad, float(np.std(base)), 0.05 * abs(med), min_scale)
    z = (float(np.mean(v[split:])) - float(np.mean(base))) / scale
    if z < MIN_Z:
        return None
    return float(ts[split]), z


def find_start(state: StateStore, telemetry: TelemetrySource, space: str, point: StartingPoint,
               start: datetime, end: datetime, at: datetime | None = None) -> Start:
    a, b = start.timestamp(), end.timestamp()
    if point is StartingPoint.FREE_TEXT:
        onset = at or end
        return Start(onset=onset, note=f"starting point: the time given, {_iso(onset)}")
    if point is StartingPoint.LATEST_ALARM:
        candidates = [x for x in [state.latest_alert(space, start, end)] if x is not None]
        candidates += [x for x in telemetry.alerts(space) if start <= x.at <= end]
        if not candidates:
            raise InputError(f"no alert in space {space!r} between {_iso(start)} and {_iso(end)}")
        alert = max(candidates, key=lambda x: x.at)
        return Start(onset=alert.at, alert=alert, resource=alert.resource,
                     note=f"starting point: the latest alarm, {alert.title or alert.id} at {_iso(alert.at)}")
    if point is StartingPoint.HIGH_CPU:
        m = telemetry.metrics(space, a, b)
        best = None
        for (res, name), g in m.groupby(["resource", "name"], sort=False):
            if categorize(str(name))[0] != "cpu":
                continue
            cp = change_point(g["ts"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float))
            if cp and (best is None or cp[1] > best[2]):
                best = (str(res), str(name), cp[1], cp[0])
        if best is None:
            raise InputError(f"no CPU series rises in space {space!r} between {_iso(start)} and {_iso(end)}")
        res, name, z, t = best
        onset = datetime.fromtimestamp(t, UTC)
        return Start(onset=onset, resource=res, data={"metric": name, "z": round(z, 2)},
                     note=f"starting point: high CPU, {name} of {res} rose at {_iso(onset)} (robust z {z:.1f})")
    if point is StartingPoint.ERROR_RATE_SPIKE:
        sp = telemetry.spans(space, a, b)
        lg = telemetry.logs(space, a, b)
        times = [sp["start"].to_numpy(dtype=float)[sp["error"].astype(bool).to_numpy()]]
        lv = lg["level"].fillna("").str.upper()
        times.append(lg["ts"].to_numpy(dtype=float)[lv.str.startswith(("ERR", "FATAL", "CRIT")).to_numpy()])
        errs = np.concatenate(times)
        if len(errs) == 0:
            raise InputError(f"no errors in space {space!r} between {_iso(start)} and {_iso(end)}")
        step = max((b - a) / 120.0, 1.0)
        edges = np.arange(a, b + step, step)
        counts, _ = np.histogram(errs, bins=edges)
        cp = change_point(edges[:-1], counts.astype(float), min_scale=1.0)
        if cp is None:
            raise InputError(f"the error rate in space {space!r} does not step up between {_iso(start)} and "
                             f"{_iso(end)} ({len(errs)} errors, no spike)")
        t, z = cp
        onset = datetime.fromtimestamp(t, UTC)
        return Start(onset=onset, data={"errors": int(len(errs)), "z": round(z, 2), "bucket_s": step},
                     note=f"starting point: error-rate spike at {_iso(onset)} (robust z {z:.1f}, "
                          f"{len(errs)} errors in the window)")
    raise InputError(f"unknown starting point {point!r}")


@dataclass
class Plan:
    """A manual start, ready to be created: its trigger, window, first journal note and settle wait."""
    trigger: Trigger
    window: Window
    note: JournalEntry
    wait: datetime | None


def plan_start(state: StateStore, telemetry: TelemetrySource, settings, space: str, point: StartingPoint,
               start: datetime | None, end: datetime | None, at: datetime | None, text: str, actor: str,
               extra: dict | None = None) -> Plan:
    """The window rules of a manual start (default: the last hour; at most 7 days), its starting point
    found in the space's telemetry, and the note that opens its journal. ``settings`` are the engine's."""
    state.get_space(space)
    end = end or (at if at and not start else datetime.now(UTC))
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise InputError("the window must start before it ends")
    if end - start > timedelta(days=7):
        raise InputError("the window may span at most 7 days")
    if at is not None and point is not StartingPoint.FREE_TEXT:
        raise InputError("'at' goes with the free-text starting point; the others search the window")
    found = find_start(state, telemetry, space, point, start, end, at)
    window = Window.around(found.onset, timedelta(seconds=settings.metric_lookback_s),
                           timedelta(seconds=settings.after_s))
    trigger = Trigger(kind=TriggerKind.MANUAL, alert=found.alert, starting_point=point, text=text)
    settle = state.get_space(space).policies.settle_s
    wait = state.settle_until(found.onset, settle)
    message = found.note + (f"; waiting until {wait:%H:%M:%S}Z, {settle:g} s after it, for its telemetry"
                            if wait else "")
    note = JournalEntry(investigation_id="", seq=1, kind=JournalKind.NOTE, message=message, source=actor,
                        data={"starting_point": point.value, "window": [start.isoformat(), end.isoformat()],
                              **({"resource": found.resource} if found.resource else {}), **found.data,
                              **({"not_before": wait.isoformat()} if wait else {}), **(extra or {})})
    return Plan(trigger, window, note, wait)
