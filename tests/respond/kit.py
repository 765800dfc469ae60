"""Shared set-up for the respond tests: a state store with a space and a concluded investigation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.model import (
    AgentSpace,
    Alert,
    FaultKind,
    Hypothesis,
    InvestigationStatus,
    JournalKind,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.respond.service import RespondService
from vigil.store.state import StateStore

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def concluded(st: StateStore, space: str, resource: str = "orders-api", kind: FaultKind = FaultKind.ERROR,
              alert: Alert | None = None, cause: dict | None = None) -> str:
    inv = st.create_investigation(space, Trigger(kind=TriggerKind.ALERT if alert else TriggerKind.MANUAL, alert=alert),
                                  Window.around(T0, timedelta(hours=1), timedelta(minutes=5)))
    st.set_status(inv.id, InvestigationStatus.RUNNING)
    st.append_journal(inv.id, JournalKind.QUERY, "queried logs: 120 rows", source="embedded",
                      query="logs space=x window=[...]", rows=120)
    if cause:
        st.append_journal(inv.id, JournalKind.ANALYSIS, "cause: hypothesis #1: ...", source="engine",
                          data={"cause": cause})
    st.replace_hypotheses(inv.id, [Hypothesis(rank=1, resource=resource, fault_kind=kind, confidence=0.7,
                                              path=[resource, "frontend"], why="errors began there"),
                                   Hypothesis(rank=2, resource="frontend", fault_kind=FaultKind.ERROR, confidence=0.1)])
    st.append_journal(inv.id, JournalKind.CONCLUSION, f"Probable root cause: {resource}", source="engine")
    st.set_status(inv.id, InvestigationStatus.CONCLUDED, summary=f"Probable root cause: {resource} ({kind.value})")
    return inv.id


def setup(database_url: str, space: str = "shop", sources=None) -> tuple[StateStore, RespondService]:
    from vigil.store.telemetry import TelemetryStore
    st = StateStore(database_url)
    st.put_space(AgentSpace(id=space, name=space))
    return st, RespondService(st, sources if sources is not None else TelemetryStore())
