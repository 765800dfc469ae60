"""The application services write each change and the audit entry that records it in ONE transaction:
when anything fails after the change (here: the audit write itself, after it has added its row), neither
the change nor the audit entry is stored. Against SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.errors import InputError
from vigil.model import (
    AgentSpace,
    FaultKind,
    Hypothesis,
    HypothesisState,
    IncomingAlert,
    InvestigationStatus,
    Role,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.services import Services
from vigil.store.repos.audit import AuditRepo
from vigil.store.state import StateStore

T0 = datetime(2023, 1, 29, 10, 4, 34, tzinfo=UTC)


class Disk(RuntimeError):
    pass


class _App:
    """What the services need of ``vigil.app.App`` for these actions: the state store."""

    def __init__(self, url: str) -> None:
        self.state = StateStore(url)
        self.sources = None
        self.telemetry = None


@pytest.fixture
def world(database_url):
    app = _App(database_url)
    svc = Services(app)
    st = app.state
    st.put_space(AgentSpace(id="shop", description="before"))
    inv = st.create_investigation("shop", Trigger(kind=TriggerKind.MANUAL), Window.around(T0, timedelta(hours=1),
                                                                                          timedelta(minutes=5)))
    st.set_status(inv.id, InvestigationStatus.RUNNING)
    hyp = st.replace_hypotheses(inv.id, [Hypothesis(rank=1, resource="cart", fault_kind=FaultKind.CPU,
                                                    confidence=0.7)])[0]
    st.set_status(inv.id, InvestigationStatus.CONCLUDED)
    queued = st.create_investigation("shop", Trigger(kind=TriggerKind.MANUAL), inv.window, enqueue=True)
    _, tok = st.create_token("shop", Role.VIEWER, name="keep")
    st.put_source("shop", "otel", "otlp", {"resource_attribute": "service.name"})
    st.put_integration("shop", "generic", {}, "generic-secret-0123456789")
    yield svc, st, {"inv": inv.id, "hyp": hyp.id, "queued": queued.id, "tok": tok.id}
    st.close()


def _snapshot(st: StateStore, ids: dict[str, str]) -> dict:
    """Everything the actions below could change."""
    return {
        "spaces": [(s.id, s.description) for s in st.list_spaces()],
        "tokens": [(t.id, t.name, t.revoked_at) for t in st.list_tokens("shop")],
        "sources": [s["name"] for s in st.list_sources("shop")],
        "integrations": [i["kind"] for i in st.list_integrations("shop")],
        "investigations": sorted((i.id, i.status.value) for i in st.list_investigations("shop", limit=500)),
        "hypotheses": [(h.id, h.state.value, h.note) for h in st.hypotheses(ids["inv"])],
        "journal": [(i, len(st.journal(i))) for i in (ids["inv"], ids["queued"])],
        "jobs": st.queue_depth(),
        "incidents": len(st.list_incidents("shop")),
        "audit": len(st.audit_log(limit=10_000)),
    }


ACTIONS = {
    "space-create": lambda s, ids: s.spaces.create("other", "admin"),
    "space-update": lambda s, ids: s.spaces.update("shop", {"description": "after"}, "admin"),
    "token-create": lambda s, ids: s.tokens.create("shop", Role.OPERATOR, "new", "admin"),
    "token-revoke": lambda s, ids: s.tokens.revoke(ids["tok"], "admin", space="shop"),
    "source-put": lambda s, ids: s.sources.put("shop", "otel2", "otlp", {}, "admin", check=False),
    "source-delete": lambda s, ids: s.sources.delete("shop", "otel", "admin"),
    "integration-put": lambda s, ids: s.integrations.put("shop", "pagerduty", {}, "pd-secret-0123456789", None,
                                                         "admin"),
    "integration-delete": lambda s, ids: s.integrations.delete("shop", "generic", "admin"),
    "investigate": lambda s, ids: s.investigations.start("shop", Trigger(kind=TriggerKind.MANUAL),
                                                         Window.around(T0, timedelta(hours=1), timedelta(0)), "op"),
    "cancel": lambda s, ids: s.investigations.cancel("shop", ids["queued"], "op"),
    "hypothesis-accepted": lambda s, ids: s.investigations.judge("shop", ids["inv"], ids["hyp"], "op",
                                                                 HypothesisState.ACCEPTED, "yes"),
    "alerts": lambda s, ids: s.alerts.accept("shop", [IncomingAlert(source="t", fingerprint="fp", title="x", at=T0)],
                                             "alertmanager"),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_failure_after_the_change_stores_neither_change_nor_audit(world, action, monkeypatch):
    svc, st, ids = world
    before = _snapshot(st, ids)
    real = AuditRepo.add

    def add_then_fail(self, *args, **kwargs):
        real(self, *args, **kwargs)             # the audit row is in the session, after the change...
        self.s.flush()                          # ...and sent to the database
        raise Disk("the disk filled up")

    monkeypatch.setattr(AuditRepo, "add", add_then_fail)
    with pytest.raises(Disk):
        ACTIONS[action](svc, ids)
    monkeypatch.undo()
    assert _snapshot(st, ids) == before


@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_action_commits_its_change_with_exactly_one_audit_entry(world, action):
    svc, st, ids = world
    before = _snapshot(st, ids)
    ACTIONS[action](svc, ids)
    after = _snapshot(st, ids)
    assert after["audit"] == before["audit"] + 1
    assert st.audit_log(limit=1)[0]["action"] == action
    changed = {k for k in after if after[k] != before[k]} - {"audit"}
    assert changed, f"{action} changed nothing but the audit log"


def test_cancel_and_judge_journal_with_the_change(world):
    svc, st, ids = world
    n = len(st.journal(ids["queued"]))
    inv = svc.investigations.cancel("shop", ids["queued"], "op")
    assert inv.status is InvestigationStatus.CANCELLED and st.job(ids["queued"])["status"] == "done"
    assert [e.message for e in st.journal(ids["queued"])[n:]] == ["cancel requested by op"]
    with pytest.raises(InputError, match="already finished"):
        svc.investigations.cancel("shop", ids["queued"], "op")
    assert len(st.journal(ids["queued"])) == n + 1          # the refused cancel wrote nothing


def test_every_start_goes_through_one_path(world, monkeypatch):
    """Manual starts, reruns, alert-triggered and CLI starts all record through ``create_in``."""
    svc, st, ids = world
    seen = []
    real = type(svc.investigations).create_in

    def spy(self, u, space, trigger, window, **kw):
        seen.append(trigger.kind.value)
        return real(self, u, space, trigger, window, **kw)

    monkeypatch.setattr(type(svc.investigations), "create_in", spy)
    from vigil.model import Steering
    parent = st.get_investigation(ids["inv"])
    svc.investigations.start_linked("shop", parent, Steering(focus=["cart"], parent=parent.id, by="op"), "op")
    svc.investigations.start_at("shop", T0, "cli")
    svc.alerts.accept("shop", [IncomingAlert(source="t", fingerprint="fp-new", title="x", at=T0)], "am")
    assert seen == ["manual", "manual", "alert"]


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_console_sign_in_issues_a_new_session_keeps_the_spaces_and_is_audited(world, kind):
    from vigil.services.sessions import SessionService
    from vigil.store.sessions import DbSessionStore, MemorySessionStore
    svc, st, ids = world
    sessions = SessionService(MemorySessionStore() if kind == "memory" else DbSessionStore(st), svc.audit)
    sid1, s1 = sessions.sign_in(None, "shop", ids["tok"], "token:keep")
    sid2, s2 = sessions.sign_in(sid1, "other", "tok-2", "token:other")
    assert sid2 != sid1 and sessions.get(sid1) is None                   # no fixation: the old id is dead
    assert sessions.get(sid2).tokens == {"shop": ids["tok"], "other": "tok-2"} and s2.csrf != s1.csrf
    assert [e["action"] for e in svc.audit.log("shop")].count("console-sign-in") == 1
    sessions.sign_out(sid2)
    assert sessions.get(sid2) is None and sessions.count() == 0
