"""The REST API and the live journal on the shipped real incident (Nezha Train-Ticket): manual
starting points, the SSE stream (with resumption), judging hypotheses, reports, tokens, space
settings, the audit log, the server's own metrics, and bad input answered with one-line 4xx."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from e2e.kit import SCALEOUT, live_server, read_events, wait_for

from vigil.ingest import discover
from vigil.model import Role

REPO = Path(__file__).resolve().parent.parent
WINDOW = {"start": "2023-01-29T15:00:00Z", "end": "2023-01-29T16:30:00Z"}
ROOT = "ts-preserve-service"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("flow"), workers=2) as lv:
        lv.runtime.app.import_recording(discover([REPO / "demo" / "nezha-trainticket"])[0], "demo")
        yield lv


@pytest.fixture(scope="module")
def tokens(live):
    return {r: live.token("demo", r, name=f"flow-{r.value}") for r in Role}


@pytest.fixture(scope="module")
def concluded(live, tokens):
    """An investigation started by hand from the latest alarm, run to its end."""
    with live.client(tokens[Role.OPERATOR]) as c:
        r = c.post("/v1/spaces/demo/investigations", json={"starting_point": "latest-alarm", **WINDOW,
                                                           "text": "users report failed bookings"})
        assert r.status_code == 202, r.text
        inv = r.json()
        assert inv["status"] in ("queued", "running") and inv["job"]["status"] in ("queued", "running")
        assert inv["trigger"]["starting_point"] == "latest-alarm" and inv["trigger"]["alert"]
        wait_for(lambda: c.get(f"/v1/spaces/demo/investigations/{inv['id']}").json()["status"]
                 not in ("queued", "running"), 120, 0.1, "the investigation")
    return inv["id"]


def test_the_live_journal_streams_every_step_and_the_root_cause(live, tokens, concluded):
    with live.client(tokens[Role.VIEWER]) as c:
        events = read_events(c, f"/v1/spaces/demo/investigations/{concluded}/events")
        journal = [e for e in events if e[0] == "journal"]
        assert [int(e[1]) for e in journal] == list(range(1, len(journal) + 1))
        kinds = [e[2]["kind"] for e in journal]
        assert kinds[0] == "note" and kinds[1] == "started" and kinds[-1] == "conclusion"
        assert "query" in kinds and "analysis" in kinds
        assert "latest alarm" in journal[0][2]["message"]
        hyps = [e[2] for e in events if e[0] == "hypotheses"][-1]
        assert hyps[0]["resource"] == ROOT and hyps[0]["evidence"] and hyps[0]["path"][0] == ROOT
        assert events[-1][0] == "end" and events[-2][0] == "status"
        # resuming after entry 5 (Last-Event-ID, as browsers do) or ?after=
        again = read_events(c, f"/v1/spaces/demo/investigations/{concluded}/events", headers={"Last-Event-ID": "5"})
        assert [int(e[1]) for e in again if e[0] == "journal"][0] == 6
        again = read_events(c, f"/v1/spaces/demo/investigations/{concluded}/events?after=7")
        assert [int(e[1]) for e in again if e[0] == "journal"][0] == 8
        rest = c.get(f"/v1/spaces/demo/investigations/{concluded}/journal", params={"after": 3}).json()
        assert [j["seq"] for j in rest] == list(range(4, len(journal) + 1))


def test_stream_of_a_running_investigation_follows_it_live(live, tokens):
    with live.client(tokens[Role.OPERATOR]) as c:
        inv = c.post("/v1/spaces/demo/investigations", json={"starting_point": "free-text",
                                                             "at": "2023-01-29T15:42:00Z"}).json()
        events = read_events(c, f"/v1/spaces/demo/investigations/{inv['id']}/events")
    statuses = [e[2]["status"] for e in events if e[0] == "status"]
    assert statuses[-1] in ("concluded", "inconclusive") and len(statuses) >= 1
    assert events[-1][0] == "end"


def test_people_judge_hypotheses_and_it_shows_everywhere(live, tokens, concluded):
    base = f"/v1/spaces/demo/investigations/{concluded}"
    with live.client(tokens[Role.OPERATOR]) as c:
        hyps = c.get(base + "/hypotheses").json()
        assert len(hyps) >= 3
        r = c.post(f"{base}/hypotheses/{hyps[0]['id']}/accept", json={"note": "CPU limit hit; raised it"})
        assert r.status_code == 200 and r.json()["state"] == "accepted" and r.json()["note"].startswith("CPU")
        assert c.post(f"{base}/hypotheses/{hyps[1]['id']}/discard").json()["state"] == "discarded"
        r = c.post(f"{base}/hypotheses/{hyps[2]['id']}/note", json={"note": "worth a look next time"})
        assert r.json()["state"] == "proposed" and r.json()["note"] == "worth a look next time"
        assert c.post(f"{base}/hypotheses/{hyps[2]['id']}/note", json={"note": ""}).status_code == 422
        assert c.post(f"{base}/hypotheses/hyp_nope/accept").status_code == 404
        got = c.get(base + "/hypotheses").json()
        assert [h["state"] for h in got[:3]] == ["accepted", "discarded", "proposed"]
        events = read_events(c, base + "/events")
        assert [h["state"] for h in [e[2] for e in events if e[0] == "hypotheses"][-1][:2]] == ["accepted", "discarded"]
        notes = [j for j in c.get(base + "/journal").json() if j["kind"] == "note" and j["data"].get("hypothesis")]
        assert len(notes) == 3 and "accepted hypothesis #1" in notes[0]["message"] and "flow-operator" in notes[0]["source"]
    audit = live.state.audit_log("demo")
    assert {"hypothesis-accepted", "hypothesis-discarded", "hypothesis-note"} <= {a["action"] for a in audit}
    assert all("flow-operator" in a["actor"] for a in audit if a["action"].startswith("hypothesis"))


def test_reports(live, tokens, concluded):
    with live.client(tokens[Role.VIEWER]) as c:
        base = f"/v1/spaces/demo/investigations/{concluded}/report"
        md = c.get(base)
        assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown") and ROOT in md.text
        js = c.get(base, params={"format": "json"}).json()
        assert js["hypotheses"][0]["resource"] == ROOT and js["journal"]
        html = c.get(base, params={"format": "html"})
        assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
        assert c.get(base, params={"format": "pdf"}).status_code == 422


def test_starting_points(live, tokens):
    with live.client(tokens[Role.OPERATOR]) as c:
        r = c.post("/v1/spaces/demo/investigations", json={"starting_point": "high-cpu", **WINDOW})
        assert r.status_code == 202, r.text
        note = c.get(f"/v1/spaces/demo/investigations/{r.json()['id']}/journal").json()[0]
        assert note["data"]["starting_point"] == "high-cpu" and "cpu" in note["data"]["metric"].lower()
        assert "2023-01-29T15:" in note["message"]
        r = c.post("/v1/spaces/demo/investigations", json={"starting_point": "error-rate-spike", **WINDOW})
        assert r.status_code in (202, 400), r.text
        if r.status_code == 400:
            assert "error rate" in r.json()["error"] or "no errors" in r.json()["error"]
        for body, msg in [
            ({"starting_point": "latest-alarm", "start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"},
             "no alert in space 'demo'"),
            ({"starting_point": "high-cpu", "start": "2023-01-29T16:00:00Z", "end": "2023-01-29T15:00:00Z"},
             "must start before it ends"),
            ({"starting_point": "high-cpu", "start": "2023-01-01T00:00:00Z", "end": "2023-02-01T00:00:00Z"},
             "at most 7 days"),
            ({"starting_point": "high-cpu", "at": "2023-01-29T15:42:00Z"}, "'at' goes with the free-text"),
            ({"starting_point": "high-cpu", "start": "2020-01-01T00:00:00Z", "end": "2020-01-01T01:00:00Z"},
             "no CPU series rises"),
        ]:
            r = c.post("/v1/spaces/demo/investigations", json=body)
            assert r.status_code == 400 and msg in r.json()["error"], (body, r.text)
        for body in ({"starting_point": "gut-feeling"}, {"starting_point": "free-text", "text": "x" * 3000},
                     {"starting_point": "free-text", "at": "yesterday"}, {"starting_point": "free-text", "extra": 1}):
            r = c.post("/v1/spaces/demo/investigations", json=body)
            assert r.status_code == 422 and r.json()["error"].startswith("invalid body"), r.text


def test_tokens_over_the_api_take_effect_at_once(live, tokens):
    with live.client(tokens[Role.ADMIN]) as c:
        r = c.post("/v1/spaces/demo/tokens", json={"role": "operator", "name": "ci"})
        assert r.status_code == 201 and r.json()["token"].startswith("vgl_") and r.json()["role"] == "operator"
        new, new_id = r.json()["token"], r.json()["id"]
        listed = c.get("/v1/spaces/demo/tokens").json()
        assert new_id in {t["id"] for t in listed} and new not in str(listed)
        assert httpx.get(live.url + "/v1/spaces/demo", headers={"Authorization": f"Bearer {new}"}).status_code == 200
        assert c.delete(f"/v1/spaces/demo/tokens/{new_id}").json()["revoked_at"]
        assert httpx.get(live.url + "/v1/spaces/demo", headers={"Authorization": f"Bearer {new}"}).status_code == 401
        assert c.post("/v1/spaces/demo/tokens", json={"role": "root"}).status_code == 422
    audit = live.state.audit_log("demo")
    assert [a["action"] for a in audit[:2]] == ["token-revoke", "token-create"]


def test_space_settings(live, tokens):
    with live.client(tokens[Role.ADMIN]) as c:
        r = c.patch("/v1/spaces/demo", json={"description": "train ticket", "alerting": {"window_s": 120,
                                                                                         "group_by": ["service"]}})
        assert r.status_code == 200 and r.json()["alerting"] == {"window_s": 120.0, "group_by": ["service"]}
        assert r.json()["policies"]["read_only"] is True          # untouched fields keep their values
        assert c.patch("/v1/spaces/demo", json={"policies": {"investigation_budget_s": -1}}).status_code == 422
        assert c.patch("/v1/spaces/demo", json={"id": "hijack"}).status_code == 422
        assert c.get("/v1/spaces").json()[0]["description"] == "train ticket"
        assert c.patch("/v1/spaces/demo", json={"alerting": {"window_s": 600, "group_by": []}}).status_code == 200


def test_bad_input_gets_one_line_4xx(live, tokens):
    with live.client(tokens[Role.ADMIN]) as c:
        cases = [
            c.post("/v1/spaces/demo/investigations", content=b"{not json", headers={"Content-Type": "application/json"}),
            c.post("/v1/spaces/demo/investigations", content=b"\xff\xfe\x00garbage",
                   headers={"Content-Type": "application/json"}),
            c.post("/v1/spaces/demo/investigations", content=b"x" * (2 << 20), headers={"Content-Type": "application/json"}),
            c.post("/v1/spaces/demo/investigations", content=b"starting_point=high-cpu",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}),
            c.get("/v1/spaces/demo/investigations", params={"limit": "many"}),
            c.get("/v1/spaces/demo/investigations", params={"status": "exploded"}),
            c.get("/v1/spaces/DEMO!/investigations"),
            c.get("/v1/spaces/demo/investigations/" + "x" * 500),
            c.get("/v1/spaces/demo/nothing-here"),
            c.put("/v1/spaces/demo/investigations"),
            c.post("/v1/spaces/demo/webhooks/alertmanager", content=b"\x00\x01", headers={"Content-Type": "x/y"}),
            c.post("/v1/spaces/demo/tokens", json=[]),
            c.get("/v1/spaces/demo/investigations/inv_nope"),
            c.get("/v1/spaces/demo/incidents/inc_nope"),
        ]
        for r in cases:
            assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
            body = r.json()
            assert list(body) == ["error"] and "\n" not in body["error"] and body["error"], body
        assert cases[0].json()["error"] == "the body is not valid JSON"
        assert cases[2].status_code == 413
        assert cases[8].status_code == 404 and cases[9].status_code == 405
    # a declared length over the limit is refused before the body is read
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/spaces/demo/investigations HTTP/1.1\r\nHost: {host}\r\nContent-Length: {50 << 20}"
                     f"\r\nContent-Type: application/json\r\nAuthorization: Bearer {tokens[Role.ADMIN]}\r\n\r\n{{}}"
                     .encode())
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413") and '{"error": "the body is larger than' in head


def test_health_readiness_and_metrics(live, concluded):
    assert httpx.get(live.url + "/healthz").json()["status"] == "ok"
    ready = httpx.get(live.url + "/readyz").json()
    runs = "broker" if SCALEOUT else "workers"      # scale-out: investigations run on `vigil worker`s
    assert ready == {"status": "ready", "checks": {"state": "ok", "telemetry": "ok", runs: "ok"}}
    m = httpx.get(live.url + "/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    text = m.text
    workers = "vigil_workers 0.0" if SCALEOUT else "vigil_workers 2.0"    # scale-out: none in the replica
    for needle in ('vigil_investigations{status="concluded"}', "vigil_queue_depth ", workers,
                   "vigil_investigation_seconds_bucket", 'vigil_http_responses_total{code="2xx"'):
        assert needle in text, needle
    assert "demo" not in text        # no space names for the unauthenticated scraper
    spec = httpx.get(live.url + "/openapi.json").json()
    assert spec["info"]["title"] == "Vigil" and "/v1/spaces/{space}/investigations/{inv_id}/events" in spec["paths"]
