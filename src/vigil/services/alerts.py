"""Alerts from every trigger: deduplicated by fingerprint, grouped into incidents within the space's
window, one investigation queued per new incident (after the settle wait), and the delivery audited,
all in ONE transaction: when ``accept`` returns, every alert is durably recorded (or it raised and
nothing was written). These are the business rules; ``store.repos.alerts`` only reads and writes rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.model import (
    Alert,
    AlertOutcome,
    AlertStatus,
    Incident,
    IncidentStatus,
    IncomingAlert,
    JournalEntry,
    JournalKind,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.services.hooks import Hooks
from vigil.services.starting import settle_until
from vigil.store.repos.common import utc


def group_key(labels: dict[str, str], group_by: list[str]) -> str:
    return ",".join(f"{k}={labels.get(k, '')}" for k in sorted(group_by))[:300]


Create = Callable[..., Any]


def _plain_create(u: Any, space: str, trigger: Trigger, window: Window, *, note: JournalEntry | None,
                  not_before: datetime | None, max_attempts: int) -> Any:
    inv = u.investigations.add(space, trigger, window, note)
    u.jobs.enqueue(inv.id, space, inv.created_at, max_attempts, not_before)
    return inv


def accept_in(u: Any, space_id: str, alerts: list[IncomingAlert], lookback: timedelta, after: timedelta,
              now: datetime, create: Create) -> list[AlertOutcome]:
    """Deduplicate and group ``alerts`` inside the unit of work ``u``; ``create(u, space, trigger, window,
    note=, not_before=)`` records the investigation of a new incident."""
    outcomes: list[AlertOutcome] = []
    space = u.spaces.get(space_id, lock=True)               # serialises deliveries to one space
    grouping = space.alerting
    open_incs = u.alerts.open_incidents(space_id)
    # the alerts of open incidents this delivery names, looked up once (a storm is one query)
    known = u.alerts.alerts_of(space_id, [a.fingerprint for a in alerts], list(open_incs))
    firing: dict[str, int] = {}     # firing alerts of the open incidents a resolution touched
    for a in alerts:
        at = min(utc(a.at), now + timedelta(seconds=60))
        existing = known.get(a.fingerprint)
        if existing is not None and existing.incident_id not in open_incs:
            existing = None          # its incident resolved earlier in this delivery
        if a.status is AlertStatus.RESOLVED:
            if existing is None:
                outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome="ignored"))
                continue
            was_firing = existing.status == AlertStatus.FIRING.value
            existing.status, existing.last_received_at = AlertStatus.RESOLVED.value, now
            inc = open_incs[existing.incident_id]
            if inc.id in firing:
                firing[inc.id] -= was_firing
            else:       # counted once per incident and delivery, then kept up to date here
                firing[inc.id] = u.alerts.firing_count(inc.id)
            if not firing[inc.id]:
                inc.status = IncidentStatus.RESOLVED.value
                del open_incs[inc.id]
            outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome="resolved", incident_id=inc.id,
                                         investigation_id=inc.investigation_id))
            continue
        if existing is not None:
            if existing.status != AlertStatus.FIRING.value and existing.incident_id in firing:
                firing[existing.incident_id] += 1
            existing.receipts += 1
            existing.status, existing.last_received_at = AlertStatus.FIRING.value, now
            inc = open_incs[existing.incident_id]
            inc.duplicates += 1
            inc.last_seen = now
            outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome="duplicate", incident_id=inc.id,
                                         investigation_id=inc.investigation_id))
            continue
        key = group_key(a.labels, grouping.group_by)
        horizon = now - timedelta(seconds=grouping.window_s)
        joinable = [r for r in open_incs.values() if r.group_key == key and utc(r.last_seen) >= horizon]
        if joinable:
            inc = max(joinable, key=lambda r: utc(r.last_seen))
            inc.alert_count += 1
            inc.last_seen = now
            outcome = "grouped"
        else:
            alert = Alert(id=a.fingerprint, title=a.title, at=at, resource=a.resource, metric=a.metric,
                          labels=a.labels, fingerprint=a.fingerprint)
            wait = settle_until(at, space.policies.settle_s, now)
            note = None if wait is None else JournalEntry(
                investigation_id="", seq=1, kind=JournalKind.NOTE, source="server",
                message=f"waiting until {wait:%H:%M:%S}Z to investigate, {space.policies.settle_s:g} s "
                        "after the onset, so that telemetry from after it has arrived",
                data={"not_before": wait.isoformat()})
            inv = create(u, space_id, Trigger(kind=TriggerKind.ALERT, alert=alert, text=f"{a.source} alert"),
                         Window.around(at, lookback, after), note=note, not_before=wait)
            inc = u.alerts.add_incident(space_id, a.title, a.source, key, now, inv.id)
            u.flush()           # the investigation and incident rows before their alerts'
            open_incs[inc.id] = inc
            firing[inc.id] = 0
            outcome = "new-incident"
        if inc.id in firing:
            firing[inc.id] += 1
        known[a.fingerprint] = u.alerts.add_alert(inc.id, space_id, a, at, now)
        outcomes.append(AlertOutcome(fingerprint=a.fingerprint, outcome=outcome, incident_id=inc.id,
                                     investigation_id=inc.investigation_id))
    return outcomes


def accept_alerts(store: Any, space_id: str, alerts: list[IncomingAlert], lookback: timedelta, after: timedelta,
                  max_attempts: int = 3, now: datetime | None = None) -> list[AlertOutcome]:
    """``accept_in`` in a unit of work of its own (no audit, no journal notes: the rules alone)."""
    now = now or datetime.now(UTC)

    def create(u: Any, space: str, trigger: Trigger, window: Window, *, note: JournalEntry | None,
               not_before: datetime | None) -> Any:
        return _plain_create(u, space, trigger, window, note=note, not_before=not_before, max_attempts=max_attempts)

    with store.uow() as u:
        return accept_in(u, space_id, alerts, lookback, after, now, create)


class AlertService:
    def __init__(self, store: Any, investigations: Any, hooks: Hooks) -> None:
        self.store = store
        self.investigations = investigations
        self.hooks = hooks

    def accept(self, space: str, alerts: list[IncomingAlert], actor: str,
               now: datetime | None = None) -> list[AlertOutcome]:
        """Durably record delivered alerts (incidents, queued investigations) and audit the delivery, in one
        transaction, before answering."""
        now = now or datetime.now(UTC)
        s = self.investigations.engine_settings
        lookback, after = timedelta(seconds=s.metric_lookback_s), timedelta(seconds=s.after_s)

        def create(u: Any, space_id: str, trigger: Trigger, window: Window, *, note: JournalEntry | None,
                   not_before: datetime | None) -> Any:
            return self.investigations.create_in(u, space_id, trigger, window, note=note, not_before=not_before)

        def work(u: Any) -> list[AlertOutcome]:
            outcomes = accept_in(u, space, alerts, lookback, after, now, create)
            u.audit.add(actor, "alerts", space, ",".join(sorted({o.incident_id or "-" for o in outcomes}))[:200],
                        {"delivered": len(alerts),
                         "outcomes": {k: sum(1 for o in outcomes if o.outcome == k)
                                      for k in {o.outcome for o in outcomes}}})
            return outcomes

        outcomes = self.store.atomic(work)
        new = [o.investigation_id for o in outcomes if o.outcome == "new-incident" and o.investigation_id]
        if new:
            self.hooks.enqueued(new)
        # the alerts that joined, repeated or resolved in an open incident: noted in its investigation's
        # journal by the process, summarised (a storm is a few entries, not one per alert)
        self.hooks.alerted(outcomes, alerts, actor)
        return outcomes

    def incidents(self, space: str, status: IncidentStatus | None = None, limit: int = 50,
                  offset: int = 0) -> list[Incident]:
        with self.store.read() as u:
            return u.alerts.list_incidents(space, status, limit, offset)

    def incident(self, space: str, incident_id: str) -> Incident:
        with self.store.read() as u:
            return u.alerts.get_incident(incident_id, space)
