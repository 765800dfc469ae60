"""The root cause as a change: a change on the suspect (or on what it depends on) before the onset is
named as the cause, the suspect's fault as its effect."""

from __future__ import annotations

import json

import pandas as pd

from vigil.engine import Analysis, Observation
from vigil.model import Alert, Edge, Evidence, EvidenceKind, FaultKind, Hypothesis, Topology
from vigil.respond.cause import conclude, explain

ONSET = 1_700_000_000.0
TOPO = Topology(edges=[Edge(src="frontend", dst="orders-api"), Edge(src="orders-api", dst="db")])


def _changes(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"resource": r, "ts": ONSET - lead, "kind": k, "description": d, "author": a,
                          "detail": json.dumps(det)} for r, lead, k, d, a, det in rows])


def _hyps() -> list[Hypothesis]:
    return [Hypothesis(rank=1, resource="orders-api", fault_kind=FaultKind.ERROR, confidence=0.8,
                       why="KeyError: 'DATABSE_URL' appeared", path=["orders-api", "frontend"],
                       evidence=[Evidence(kind=EvidenceKind.LOG, resource="orders-api", title="KeyError")]),
            Hypothesis(rank=2, resource="frontend", fault_kind=FaultKind.ERROR, confidence=0.1)]


def test_a_deploy_of_the_suspect_before_the_onset_is_the_cause():
    ch = _changes(("orders-api", 95, "deploy", "GitHub deployment 42 of shop/orders-api main@abc123 to prod",
                   "alice", {"source": "github", "sha": "abc123", "keys": ["DATABSE_URL"]}),
                  ("frontend", 3 * 3600, "deploy", "old deploy", "bob", {}))
    causes = explain(_hyps(), ch, TOPO, ONSET, symptom="frontend")
    # the frontend (#2) depends on orders-api: the same deploy explains it through its dependency
    assert [(c.rank, c.via_dependency) for c in causes] == [(1, False), (2, True)]
    c = causes[0]
    assert c.suspect == "orders-api" and not c.via_dependency and c.chain == ["orders-api", "frontend"]
    assert c.change.author == "alice" and c.change.keys == ["DATABSE_URL"] and c.change.lead_s == 95
    assert c.statement.startswith("deploy of orders-api by alice at 2023-11-14 22:11:45Z (95 s before the onset)")
    assert "changed keys DATABSE_URL -> orders-api error -> frontend" in c.statement


def test_a_change_of_a_dependency_names_the_dependency():
    ch = _changes(("db", 300, "config", "max_connections 100 -> 10", "carol", {"keys": ["max_connections"]}))
    c = explain(_hyps(), ch, TOPO, ONSET, symptom="frontend")[0]
    assert c.via_dependency and c.change.resource == "db" and c.chain == ["db", "orders-api", "frontend"]
    assert "db, a dependency of orders-api -> orders-api error -> frontend" in c.statement


def test_no_change_near_the_onset_leaves_the_conclusion_alone():
    far = _changes(("orders-api", 2 * 3600, "deploy", "yesterday's deploy", "alice", {}))
    unrelated = _changes(("payments", 60, "deploy", "a service orders-api does not call", "dan", {}))
    for ch in (far, unrelated, pd.DataFrame(columns=["resource", "ts", "kind", "description", "author"])):
        assert explain(_hyps(), ch, TOPO, ONSET) == []


def test_conclude_restates_the_summary_and_the_hypothesis():
    hyps = _hyps()
    analysis = Analysis(hypotheses=hyps, inconclusive=False,
                        summary="Probable root cause: orders-api (error), confidence 80%: KeyError.")
    obs = Observation(onset=ONSET, topology=TOPO, alert=Alert(at=pd.Timestamp(ONSET, unit="s", tz="UTC"),
                                                                resource="frontend"),
                      changes=_changes(("orders-api", 95, "deploy", "GitHub deployment 42", "alice",
                                        {"keys": ["DATABSE_URL"]})))
    causes = conclude(analysis, obs)
    assert causes and analysis.summary.startswith("Probable root cause: deploy of orders-api by alice")
    assert analysis.summary.endswith("The fault: orders-api (error).")
    assert hyps[0].why.startswith("caused by deploy of orders-api by alice 95 s before the onset; KeyError")
    assert hyps[0].evidence[0].kind is EvidenceKind.CHANGE and hyps[0].evidence[0].detail["category"] == "cause"
    assert analysis.notes[-1][0] == "cause" and analysis.notes[-1][2]["cause"]["change"]["author"] == "alice"
    # an inconclusive analysis keeps its summary (the hypotheses still cite the change)
    hyps2 = _hyps()
    a2 = Analysis(hypotheses=hyps2, inconclusive=True, summary="Inconclusive: ...")
    conclude(a2, obs)
    assert a2.summary == "Inconclusive: ..." and hyps2[0].why.startswith("caused by")
