"""Journal notes about alerts that join, repeat or resolve in an open incident, summarised.

An alert storm must not write one journal entry per alert: one Alertmanager delivery can carry 5,000
alerts, and each entry is a transaction on the investigation's row. Instead each delivery's alerts are
counted per investigation and outcome (grouped, duplicate, resolved), and an investigation gets at most
one entry per outcome per ``interval_s``: the first alerts of an incident are written at once, later
ones are held and written together when the interval has passed (by a background thread, or at
shutdown). An entry says how many alerts it stands for, with a few titles and fingerprints as a sample.

The alerts themselves are recorded (and counted on their incident) before the delivery is answered;
these notes are a reader's summary of that. Notes still held when the process dies are lost, never the
alerts they summarise (the incident's alerts and counts are in the state database)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vigil.model import AlertOutcome, IncomingAlert, JournalKind

log = logging.getLogger("vigil.server")

SAMPLE = 5              # titles and fingerprints quoted per entry
_WHAT = {"grouped": ("a related alert joined the incident", "related alerts joined the incident"),
         "duplicate": ("the alert was delivered again", "alerts were delivered again"),
         "resolved": ("the alert resolved", "alerts resolved")}
OUTCOMES = tuple(_WHAT)


@dataclass
class _Pending:
    incident: str | None
    actors: set[str] = field(default_factory=set)
    count: int = 0
    titles: dict[str, int] = field(default_factory=dict)      # title -> alerts (the first SAMPLE titles seen)
    other_titles: int = 0                                      # alerts whose title is not among them
    fingerprints: list[str] = field(default_factory=list)

    def add(self, fingerprint: str, title: str, actor: str) -> None:
        self.count += 1
        self.actors.add(actor)
        if title in self.titles:
            self.titles[title] += 1
        elif len(self.titles) < SAMPLE:
            self.titles[title] = 1
        else:
            self.other_titles += 1
        if len(self.fingerprints) < SAMPLE:
            self.fingerprints.append(fingerprint)


def summary(outcome: str, p: _Pending) -> tuple[str, dict[str, Any]]:
    """The journal message and data of one summarised entry."""
    one, many = _WHAT[outcome]
    if p.count == 1:
        message = f"{one}: {next(iter(p.titles))}"
    else:
        titles = ", ".join(f"{t} ×{n}" if n > 1 else t for t, n in p.titles.items())
        more = f" and {p.other_titles} more" if p.other_titles else ""
        message = f"{p.count} {many}: {titles}{more}"
    data = {"outcome": outcome, "count": p.count, "incident": p.incident,
            "sample": {"titles": p.titles, "fingerprints": p.fingerprints}}
    if p.count == 1:
        data["fingerprint"] = p.fingerprints[0]
    return message[:2000], data


class AlertNotes:
    """``add`` after a delivery is recorded; ``write(inv_id, kind, message, source=, data=)`` appends one
    journal entry (and wakes live streams)."""

    def __init__(self, write: Callable[..., Any], interval_s: float = 10.0) -> None:
        self._write = write
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._next: dict[str, float] = {}           # investigation -> when its next entry may be written
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="vigil-alert-notes", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write everything still held, then stop the background thread."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush(everything=True)

    def add(self, outcomes: list[AlertOutcome], alerts: list[IncomingAlert], actor: str) -> None:
        titles = {a.fingerprint: a.title for a in alerts}
        now = time.monotonic()
        touched: set[str] = set()
        with self._lock:
            for o in outcomes:
                if o.outcome not in _WHAT or not o.investigation_id:
                    continue
                key = (o.investigation_id, o.outcome)
                p = self._pending.get(key)
                if p is None:
                    p = self._pending[key] = _Pending(incident=o.incident_id)
                p.add(o.fingerprint, titles.get(o.fingerprint, o.fingerprint), actor)
                touched.add(o.investigation_id)
            due = {i for i in touched if self._next.get(i, 0.0) <= now}
            self._wake.notify_all()
        if touched - due:
            self.start()                # held notes need the thread that writes them later
        if due:
            self.flush(due)

    def flush(self, investigations: set[str] | None = None, everything: bool = False) -> int:
        """Write the held notes of ``investigations`` (those whose interval passed when None). Returns the
        number of entries written."""
        now = time.monotonic()
        with self._lock:
            if everything:
                keys = list(self._pending)
            elif investigations is not None:
                keys = [k for k in self._pending if k[0] in investigations]
            else:
                keys = [k for k in self._pending if self._next.get(k[0], 0.0) <= now]
            taken = [(k, self._pending.pop(k)) for k in keys]
            for (inv, _), _p in taken:
                self._next[inv] = now + self.interval_s
            if len(self._next) > 50_000:                 # bounded: forget investigations long quiet
                for inv in [i for i, t in self._next.items() if t < now]:
                    del self._next[inv]
        written = 0
        for (inv, outcome), p in sorted(taken, key=lambda kv: OUTCOMES.index(kv[0][1])):
            message, data = summary(outcome, p)
            try:
                self._write(inv, JournalKind.NOTE, message, source=", ".join(sorted(p.actors))[:200], data=data)
                written += 1
            except Exception:       # the note is a courtesy; the alerts themselves are recorded
                log.warning("could not journal %d %s alert(s)", p.count, outcome)
        return written

    def held(self) -> int:
        with self._lock:
            return sum(p.count for p in self._pending.values())

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    return
                if self._pending:
                    soonest = min(self._next.get(inv, 0.0) for inv, _ in self._pending)
                    timeout = max(0.05, soonest - time.monotonic())
                else:
                    timeout = None
                self._wake.wait(timeout)
                if self._stop:
                    return
            self.flush()
