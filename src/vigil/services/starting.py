"""Manual starting points: find where to start an investigation inside a time window (the reads and the
window rules; what the telemetry says is worked out in ``engine/starting.py``), and the settle wait.

- ``latest-alarm``: the latest alert received (or recorded) in the space inside the window;
- ``high-cpu``: the CPU series with the clearest rise in the window, at the time it rose;
- ``error-rate-spike``: the time the error count (failed spans plus ERROR/FATAL logs) stepped up;
- ``free-text``: the time given (``at``, default the window's end) with the operator's text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vigil.engine.starting import change_point, cpu_rise, error_spike, error_times
from vigil.errors import InputError
from vigil.model import (
    AgentSpace,
    Alert,
    JournalEntry,
    JournalKind,
    StartingPoint,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.sources.base import TelemetrySource

__all__ = ["Plan", "Start", "change_point", "find_start", "plan_start", "settle_until"]


@dataclass
class Start:
    onset: datetime
    alert: Alert | None = None
    resource: str | None = None
    note: str = ""
    data: dict = field(default_factory=dict)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def settle_until(onset: datetime, settle_s: float, now: datetime | None = None) -> datetime | None:
    """The settle wait: an investigation of an incident starting at ``onset`` may run ``settle_s`` after
    it (so that telemetry from after the onset has arrived), or now (None) when that is already past."""
    onset = onset.replace(tzinfo=UTC) if onset.tzinfo is None else onset.astimezone(UTC)
    at = onset + timedelta(seconds=settle_s)
    return at if at > (now or datetime.now(UTC)) else None


def find_start(latest_alert: Callable[[str, datetime, datetime], Alert | None], telemetry: TelemetrySource,
               space: str, point: StartingPoint, start: datetime, end: datetime, at: datetime | None = None) -> Start:
    """``latest_alert(space, start, end)``: the latest alert received in the space in the window."""
    a, b = start.timestamp(), end.timestamp()
    if point is StartingPoint.FREE_TEXT:
        onset = at or end
        return Start(onset=onset, note=f"starting point: the time given, {_iso(onset)}")
    if point is StartingPoint.LATEST_ALARM:
        candidates = [x for x in [latest_alert(space, start, end)] if x is not None]
        candidates += [x for x in telemetry.alerts(space) if start <= x.at <= end]
        if not candidates:
            raise InputError(f"no alert in space {space!r} between {_iso(start)} and {_iso(end)}")
        alert = max(candidates, key=lambda x: x.at)
        return Start(onset=alert.at, alert=alert, resource=alert.resource,
                     note=f"starting point: the latest alarm, {alert.title or alert.id} at {_iso(alert.at)}")
    if point is StartingPoint.HIGH_CPU:
        rise = cpu_rise(telemetry.metrics(space, a, b))
        if rise is None:
            raise InputError(f"no CPU series rises in space {space!r} between {_iso(start)} and {_iso(end)}")
        onset = datetime.fromtimestamp(rise.at, UTC)
        return Start(onset=onset, resource=rise.resource, data={"metric": rise.metric, "z": round(rise.z, 2)},
                     note=f"starting point: high CPU, {rise.metric} of {rise.resource} rose at {_iso(onset)} "
                          f"(robust z {rise.z:.1f})")
    if point is StartingPoint.ERROR_RATE_SPIKE:
        errs = error_times(telemetry.spans(space, a, b), telemetry.logs(space, a, b))
        if len(errs) == 0:
            raise InputError(f"no errors in space {space!r} between {_iso(start)} and {_iso(end)}")
        rise = error_spike(errs, a, b)
        if rise is None:
            raise InputError(f"the error rate in space {space!r} does not step up between {_iso(start)} and "
                             f"{_iso(end)} ({len(errs)} errors, no spike)")
        onset = datetime.fromtimestamp(rise.at, UTC)
        return Start(onset=onset, data={"errors": rise.count, "z": round(rise.z, 2), "bucket_s": rise.bucket_s},
                     note=f"starting point: error-rate spike at {_iso(onset)} (robust z {rise.z:.1f}, "
                          f"{rise.count} errors in the window)")
    raise InputError(f"unknown starting point {point!r}")


@dataclass
class Plan:
    """A manual start, ready to be created: its trigger, window, first journal note and settle wait."""
    trigger: Trigger
    window: Window
    note: JournalEntry
    wait: datetime | None


def plan_start(space_of: Callable[[str], AgentSpace], latest_alert: Callable[[str, datetime, datetime], Alert | None],
               telemetry: TelemetrySource, settings, space: str, point: StartingPoint,
               start: datetime | None, end: datetime | None, at: datetime | None, text: str, actor: str,
               extra: dict | None = None) -> Plan:
    """The window rules of a manual start (default: the last hour; at most 7 days), its starting point
    found in the space's telemetry, and the note that opens its journal. ``settings`` are the engine's;
    ``space_of(space)`` reads the space (NotFound when there is none)."""
    settle = space_of(space).policies.settle_s
    end = end or (at if at and not start else datetime.now(UTC))
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise InputError("the window must start before it ends")
    if end - start > timedelta(days=7):
        raise InputError("the window may span at most 7 days")
    if at is not None and point is not StartingPoint.FREE_TEXT:
        raise InputError("'at' goes with the free-text starting point; the others search the window")
    found = find_start(latest_alert, telemetry, space, point, start, end, at)
    window = Window.around(found.onset, timedelta(seconds=settings.metric_lookback_s),
                           timedelta(seconds=settings.after_s))
    trigger = Trigger(kind=TriggerKind.MANUAL, alert=found.alert, starting_point=point, text=text)
    wait = settle_until(found.onset, settle)
    message = found.note + (f"; waiting until {wait:%H:%M:%S}Z, {settle:g} s after it, for its telemetry"
                            if wait else "")
    note = JournalEntry(investigation_id="", seq=1, kind=JournalKind.NOTE, message=message, source=actor,
                        data={"starting_point": point.value, "window": [start.isoformat(), end.isoformat()],
                              **({"resource": found.resource} if found.resource else {}), **found.data,
                              **({"not_before": wait.isoformat()} if wait else {}), **(extra or {})})
    return Plan(trigger, window, note, wait)
