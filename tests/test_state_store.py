"""State store against SQLite and the real PostgreSQL: migrations, spaces, the investigation
lifecycle, the append-only journal, hypotheses and the audit log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from vigil.errors import InputError, NotFound
from vigil.model import (
    AgentSpace,
    Evidence,
    EvidenceKind,
    FaultKind,
    Hypothesis,
    HypothesisState,
    InvestigationStatus,
    JournalKind,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.store.state import StateStore

T0 = datetime(2023, 1, 29, 10, 4, 34, tzinfo=UTC)


@pytest.fixture
def store(database_url):
    s = StateStore(database_url)
    yield s
    s.close()


def _inv(store: StateStore, space: str = "shop"):
    store.put_space(AgentSpace(id=space, services=["a", "b"]))
    return store.create_investigation(space, Trigger(kind=TriggerKind.MANUAL, text="error rate spike"),
                                      Window.around(T0, timedelta(hours=1), timedelta(minutes=5)))


def test_migrations_create_every_table(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"spaces", "investigations", "journal", "hypotheses", "audit", "alembic_version"} <= tables
    StateStore(store.engine.url.render_as_string(hide_password=False)).close()  # re-opening is a no-op upgrade


def test_space_round_trip_and_unknown_space(store):
    store.put_space(AgentSpace(id="shop", name="Shop", services=["cart"], sources=["prom"]))
    got = store.get_space("shop")
    assert got.services == ["cart"] and got.sources == ["prom"] and got.policies.read_only
    assert [s.id for s in store.list_spaces()] == ["shop"]
    with pytest.raises(NotFound):
        store.get_space("nope")
    with pytest.raises(NotFound):
        store.create_investigation("nope", Trigger(kind=TriggerKind.MANUAL), Window.around(T0, timedelta(0), timedelta(0)))


def test_lifecycle_and_illegal_transitions(store):
    inv = _inv(store)
    assert inv.status is InvestigationStatus.QUEUED
    running = store.set_status(inv.id, InvestigationStatus.RUNNING)
    assert running.started_at is not None
    done = store.set_status(inv.id, InvestigationStatus.CONCLUDED, summary="cart is down")
    assert done.finished_at is not None and done.summary == "cart is down"
    with pytest.raises(InputError):
        store.set_status(inv.id, InvestigationStatus.RUNNING)   # concluded is final
    got = store.get_investigation(inv.id)
    assert got.window.onset == T0 and got.trigger.text == "error rate spike"
    with pytest.raises(NotFound):
        store.get_investigation(inv.id, space_id="other")     # space isolation


def test_journal_is_append_only_and_ordered_under_concurrency(store):
    inv = _inv(store)
    errors = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                store.append_journal(inv.id, JournalKind.QUERY, f"w{n} q{i}", source="embedded", query="metrics",
                                     rows=i)
        except Exception as exc:  # pragma: no cover - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = store.journal(inv.id)
    assert [e.seq for e in entries] == list(range(1, 31))
    assert {e.message for e in entries} == {f"w{n} q{i}" for n in range(3) for i in range(10)}
    assert store.journal(inv.id, after_seq=28)[0].seq == 29
    assert not hasattr(store, "update_journal") and not hasattr(store, "delete_journal")


def test_hypotheses_store_evidence_and_judgement(store):
    inv = _inv(store)
    ev = Evidence(kind=EvidenceKind.LOG, resource="cart", title="new error template", score=9.5,
                  detail={"samples": ["ERROR boom"]})
    stored = store.replace_hypotheses(inv.id, [
        Hypothesis(rank=1, resource="cart", fault_kind=FaultKind.ERROR, confidence=0.8, evidence=[ev],
                   path=["cart", "frontend"]),
        Hypothesis(rank=2, resource="db", fault_kind=FaultKind.CPU, confidence=0.1)])
    got = store.hypotheses(inv.id)
    assert [h.resource for h in got] == ["cart", "db"]
    assert got[0].evidence[0].detail["samples"] == ["ERROR boom"] and got[0].path == ["cart", "frontend"]
    judged = store.judge_hypothesis(stored[0].id, HypothesisState.ACCEPTED, note="confirmed in the deploy log")
    assert judged.state is HypothesisState.ACCEPTED and judged.note.startswith("confirmed")
    _inv(store, "other")
    with pytest.raises(NotFound):
        store.judge_hypothesis(stored[0].id, HypothesisState.DISCARDED, space_id="other")
    assert store.hypotheses(inv.id)[0].state is HypothesisState.ACCEPTED


def test_audit_log(store):
    _inv(store)
    store.audit("token:abc", "investigate", space_id="shop", target="inv_1", detail={"why": "test"})
    store.audit("token:abc", "import", space_id="other")
    log = store.audit_log("shop")
    assert len(log) == 1 and log[0]["action"] == "investigate" and log[0]["detail"] == {"why": "test"}
