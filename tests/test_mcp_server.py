"""Vigil as an MCP server, driven by the mcp SDK's own client over both transports, on the shipped real
incident (Nezha Train-Ticket, root cause ts-preserve-service):

- stdio: ``vigil mcp`` spawned as an MCP client spawns it, token from VIGIL_TOKEN, investigations run
  in that process; a missing or invalid token is exit 2 with one line on stderr and nothing on stdout;
- HTTP: ``/mcp`` of the real server (uvicorn on loopback), bearer token per request (401 without),
  investigations through the durable queue and the server's workers; and ``vigil mcp --transport http``;
- every tool sees only the token's space (another space's investigation is "not found", worded like
  one that does not exist), a viewer cannot start an investigation, read-only tools say so."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from e2e.kit import live_server, settings_for
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from vigil.app import App
from vigil.ingest import discover
from vigil.mcp.run import http_app
from vigil.model import (
    AgentSpace,
    FaultKind,
    Hypothesis,
    InvestigationStatus,
    Role,
    Trigger,
    TriggerKind,
    Window,
)
from vigil.server.runtime import Runtime
from vigil.server.settings import ServerSettings

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "nezha-trainticket"
ROOT = "ts-preserve-service"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOW = {"start": "2023-01-29T15:00:00Z", "end": "2023-01-29T16:30:00Z"}
VIGIL = Path(sys.executable).parent / "vigil"
READ_ONLY = {"space_overview", "list_investigations", "investigation_status", "investigation_journal", "hypotheses",
             "recommendations", "query_metrics", "query_logs", "query_traces", "topology", "mitigation",
             "postmortem", "prevention_backlog"}
WRITES = {"start_investigation", "ask", "propose_action"}      # none destructive


def _prepare(app: App) -> dict:
    """The demo incident in space 'demo', and a space 'other' holding one finished investigation."""
    app.import_recording(discover([DEMO])[0], "demo")
    st = app.state
    st.put_space(AgentSpace(id="other", name="other"))
    inv = st.create_investigation("other", Trigger(kind=TriggerKind.MANUAL, text="other's"),
                                  Window.around(T0, timedelta(hours=1), timedelta(minutes=5)))
    st.set_status(inv.id, InvestigationStatus.RUNNING)
    st.replace_hypotheses(inv.id, [Hypothesis(rank=1, resource="secret-service", fault_kind=FaultKind.CPU,
                                              confidence=0.9)])
    st.set_status(inv.id, InvestigationStatus.CONCLUDED, summary="secret-service")
    return {"other_inv": inv.id,
            "tokens": {(s, r): st.create_token(s, r, name=f"mcp-{s}-{r.value}")[0]
                       for s in ("demo", "other") for r in (Role.VIEWER, Role.OPERATOR)}}


def _json(r) -> dict:
    assert not r.is_error, r.content[0].text
    data = json.loads(r.content[0].text)
    assert r.structured_content == data          # the same answer, structured
    return data


def _error(r) -> str:
    assert r.is_error, r.content[0].text[:300]
    return r.content[0].text


async def _until_finished(c: Client, inv_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = _json(await c.call_tool("investigation_status", {"investigation_id": inv_id}))
        if st["status"] not in ("queued", "running"):
            return st
        assert time.monotonic() < deadline, st
        await anyio.sleep(0.2)


async def _investigate_demo(c: Client) -> str:
    """Start from the latest alarm, wait, and check what an agent would read. Returns the id."""
    started = _json(await c.call_tool("start_investigation", {"starting_point": "latest-alarm", **WINDOW,
                                                              "text": "bookings fail"}))
    assert started["status"] in ("queued", "running", "concluded")
    assert started["trigger"]["starting_point"] == "latest-alarm" and started["trigger"]["alert"]
    st = await _until_finished(c, started["id"])
    assert st["status"] == "concluded", st
    assert st["top_hypotheses"][0]["resource"] == ROOT

    hyps = _json(await c.call_tool("hypotheses", {"investigation_id": started["id"], "limit": 3}))
    top = hyps["hypotheses"][0]
    assert top["resource"] == ROOT and top["rank"] == 1 and 0 < top["confidence"] <= 1
    assert top["propagation_path"][0] == ROOT and top["evidence"] and top["why"]
    assert len(hyps["hypotheses"]) == 3 and all(len(h["evidence"]) <= 5 for h in hyps["hypotheses"])
    assert '"series":' not in json.dumps(hyps)      # raw series are summarised, the answer stays small

    page = _json(await c.call_tool("investigation_journal", {"investigation_id": started["id"], "limit": 3}))
    assert [e["seq"] for e in page["entries"]] == [1, 2, 3] and page["has_more"]
    rest = _json(await c.call_tool("investigation_journal", {"investigation_id": started["id"],
                                                             "after_seq": page["next_after_seq"]}))
    assert rest["entries"][0]["seq"] == 4 and rest["entries"][-1]["kind"] == "conclusion"
    assert any(e["kind"] == "query" for e in page["entries"] + rest["entries"])

    recs = _json(await c.call_tool("recommendations", {"investigation_id": started["id"]}))
    assert recs["mitigations"][0]["resource"] == ROOT and recs["mitigations"][0]["fault_kind"] == "cpu"
    assert any(s["mutating"] for s in recs["mitigations"][0]["steps"])
    assert not all(s["mutating"] for s in recs["mitigations"][0]["steps"])
    # the respond tools: the same specs, chat and report as the API
    spec = _json(await c.call_tool("mitigation", {"investigation_id": started["id"], "limit": 1}))["specs"][0]
    assert spec["spec"] == "vigil.mitigation/v1" and spec["resource"] == ROOT and spec["verify"]["signal"] == "metric"
    assert all(" ".join(cmd["argv"]) for st in spec["steps"] for cmd in st["commands"])
    ans = _json(await c.call_tool("ask", {"investigation_id": started["id"], "question": "which logs did you analyze?"}))
    assert ans["intent"] == "data" and ans["cites"] and "[J" not in ans["answer"] or ans["cites"]
    pm = _json(await c.call_tool("postmortem", {"investigation_id": started["id"]}))
    assert pm["markdown"].startswith("# Post-incident report") and "## Timeline" in pm["markdown"]
    assert "off in space" in _error(await c.call_tool("propose_action", {
        "investigation_id": started["id"], "kind": "webhook", "args": {"operation": "rollback", "service": ROOT}}))
    assert _json(await c.call_tool("prevention_backlog", {}))["total"] == 0
    return started["id"]


async def _telemetry(c: Client, inv_id: str) -> None:
    m = _json(await c.call_tool("query_metrics", {"investigation_id": inv_id, "resources": [ROOT]}))
    cpu = {r[1]: r for r in m["rows"]}["CpuUsage(m)"]
    cols = m["columns"]
    assert cpu[0] == ROOT and cpu[cols.index("max")] > 100 * cpu[cols.index("min")]   # the CPU spike
    assert m["window"] == {"start": "2023-01-29T14:42:00Z", "end": "2023-01-29T15:47:00Z"}
    raw = _json(await c.call_tool("query_metrics", {"investigation_id": inv_id, "resources": [ROOT],
                                                    "names": ["CpuUsage(m)"], "raw": True, "limit": 10}))
    assert len(raw["rows"]) == 10 and raw["truncated"] and raw["total_rows"] > 10
    logs = _json(await c.call_tool("query_logs", {"investigation_id": inv_id, "limit": 5}))
    assert len(logs["rows"]) == 5 and logs["truncated"]
    info = _json(await c.call_tool("query_logs", {"investigation_id": inv_id, "level": "info", "limit": 7}))
    assert len(info["rows"]) == 7 and {r[2] for r in info["rows"]} == {"INFO"}
    tr = _json(await c.call_tool("query_traces", {"investigation_id": inv_id, "resources": [ROOT], "limit": 5}))
    assert tr["rows"] and all(r[0] == ROOT for r in tr["rows"]) and tr["total_spans"] > 0
    topo = _json(await c.call_tool("topology", {"resource": ROOT}))
    assert "ts-gateway-service" in topo["callers"] and "ts-basic-service" in topo["callees"]
    whole = _json(await c.call_tool("topology", {}))
    assert whole["total_resources"] >= 10 and whole["total_edges"] >= 10
    # a day at most; bad times are one clear error
    assert "at most 24 hours" in _error(await c.call_tool("query_logs", {"start": "2023-01-01T00:00:00Z",
                                                                        "end": "2023-01-29T00:00:00Z"}))
    assert "cannot read start" in _error(await c.call_tool("query_metrics", {"start": "yesterday-ish"}))


async def _tools_and_annotations(c: Client) -> None:
    tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == READ_ONLY | WRITES
    for name in READ_ONLY:
        a = tools[name].annotations
        assert a is not None and a.read_only_hint is True and a.destructive_hint is False, name
    for name in WRITES:
        a = tools[name].annotations
        assert a is not None and a.read_only_hint is False and a.destructive_hint is False, name
    assert all(len(t.description or "") > 80 for t in tools.values())      # written for an agent
    assert "investigation_id" in tools["hypotheses"].input_schema["required"]


def _not_found_alike(err_other: str, err_none: str) -> None:
    """Another space's investigation reads exactly like one that does not exist: no existence leak."""
    assert "not found" in err_other.lower() or "no investigation" in err_other
    norm = [re.sub(r"'inv_[0-9a-z_]+'", "'ID'", e) for e in (err_other, err_none)]
    assert norm[0] == norm[1], norm


# -- stdio ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory) -> tuple[Path, dict]:
    h = tmp_path_factory.mktemp("mcp-stdio")
    app = App(settings_for(h))
    try:
        ctx = _prepare(app)
    finally:
        app.close()          # release the telemetry store for the `vigil mcp` processes
    return h, ctx


def _stdio(home: Path, token: str | None) -> Client:
    env = {"VIGIL_HOME": str(home)}
    if token is not None:
        env["VIGIL_TOKEN"] = token
    return Client(StdioServerParameters(command=str(VIGIL), args=["mcp"], env=env), read_timeout_seconds=60)


def _run(fn) -> None:
    anyio.run(fn)


def test_stdio_session_investigates_the_demo_incident(home):
    h, ctx = home

    async def main():
        async with _stdio(h, ctx["tokens"][("demo", Role.OPERATOR)]) as c:
            assert c.server_info is not None and c.server_info.name == "vigil"
            await _tools_and_annotations(c)
            ov = _json(await c.call_tool("space_overview", {}))
            assert ov["space"] == "demo" and ov["your_role"] == "operator" and ov["can_start_investigations"]
            assert ov["telemetry"]["rows"]["metrics"] > 0 and ov["recent_alerts"]
            inv_id = await _investigate_demo(c)
            await _telemetry(c, inv_id)
            # the other space's investigation is not found through this token, worded like a missing one
            for tool in ("investigation_status", "hypotheses", "investigation_journal", "recommendations"):
                e1 = _error(await c.call_tool(tool, {"investigation_id": ctx["other_inv"]}))
                e2 = _error(await c.call_tool(tool, {"investigation_id": "inv_0000000000000000"}))
                _not_found_alike(e1, e2)
                assert "secret-service" not in e1
            listed = _json(await c.call_tool("list_investigations", {}))
            assert inv_id in {i["id"] for i in listed["investigations"]}
            assert ctx["other_inv"] not in json.dumps(listed)

    _run(main)
    # it ran in that process and is recorded in the state store, not in the server's job queue
    app = App(settings_for(h))
    try:
        invs = app.state.list_investigations("demo", limit=5)
        assert invs and invs[0].status is InvestigationStatus.CONCLUDED and app.state.job(invs[0].id) is None
        assert "mcp" in app.state.journal(invs[0].id)[0].source
    finally:
        app.close()


def test_stdio_a_token_of_another_space_sees_only_its_own(home):
    h, ctx = home

    async def other():
        async with _stdio(h, ctx["tokens"][("other", Role.OPERATOR)]) as c:
            ov = _json(await c.call_tool("space_overview", {}))
            assert ov["space"] == "other" and ov["telemetry"]["rows"]["metrics"] == 0
            ids = {i["id"] for i in _json(await c.call_tool("list_investigations", {}))["investigations"]}
            assert ids == {ctx["other_inv"]}
            assert _json(await c.call_tool("topology", {}))["total_resources"] == 0     # demo's is not visible
            m = _json(await c.call_tool("query_metrics", {**WINDOW, "end": "2023-01-29T16:00:00Z"}))
            assert m["rows"] == [] and m["total_points"] == 0
            demo = App(settings_for(h)).state        # (state only: the telemetry store is the server's)
            try:
                demo_inv = demo.list_investigations("demo", limit=1)[0].id
            finally:
                demo.close()
            _not_found_alike(_error(await c.call_tool("hypotheses", {"investigation_id": demo_inv})),
                             _error(await c.call_tool("hypotheses", {"investigation_id": "inv_0000000000000000"})))

    _run(other)


@pytest.mark.parametrize("token", [None, "", "vgl_not-a-real-token"])
def test_stdio_refuses_a_missing_or_invalid_token_before_serving(home, token):
    h, _ctx = home
    env = {**os.environ, "VIGIL_HOME": str(h)}
    env.pop("VIGIL_TOKEN", None)
    if token is not None:
        env["VIGIL_TOKEN"] = token
    p = subprocess.run([str(VIGIL), "mcp"], input="", capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: VIGIL_TOKEN"), p.stderr


# -- HTTP -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("mcp-http"), workers=1) as lv:
        lv.ctx = _prepare(lv.runtime.app)
        yield lv


def _http(url: str, token: str, mode: str = "auto") -> tuple[Client, httpx2.AsyncClient]:
    hc = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return Client(streamable_http_client(url, http_client=hc), mode=mode), hc


def test_http_needs_a_valid_bearer_token(live):
    revoked, rec = live.state.create_token("demo", Role.ADMIN, name="revoked")
    live.state.revoke_token(rec.id)
    live.runtime.tokens.clear()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    for headers in ({}, {"Authorization": "Bearer vgl_not-a-real-token"}, {"Authorization": f"Bearer {revoked}"},
                    {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer"}):
        for method in ("POST", "GET", "DELETE"):
            r = httpx.request(method, live.url + "/mcp", json=init if method == "POST" else None,
                              headers={**headers, "Accept": "application/json, text/event-stream"})
            assert r.status_code == 401, (headers, method, r.status_code, r.text)
            assert set(r.json()) == {"error"} and "token" in r.json()["error"] and "\n" not in r.text
            assert r.headers.get("www-authenticate") == "Bearer"
    # with a token the same request is answered by the MCP server
    viewer = live.ctx["tokens"][("demo", Role.VIEWER)]
    r = httpx.post(live.url + "/mcp", json=init, headers={"Authorization": f"Bearer {viewer}",
                                                          "Accept": "application/json, text/event-stream"})
    assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "vigil"
    assert "/mcp" not in httpx.get(live.url + "/openapi.json", timeout=60).json()["paths"]


def test_http_session_investigates_through_the_durable_queue(live):
    ctx = live.ctx
    op = ctx["tokens"][("demo", Role.OPERATOR)]

    async def main():
        c, hc = _http(live.url + "/mcp", op)
        async with hc, c:
            await _tools_and_annotations(c)
            inv_id = await _investigate_demo(c)
            st = _json(await c.call_tool("investigation_status", {"investigation_id": inv_id}))
            assert st["job"]["status"] == "done", st            # it went through the server's job queue
            await _telemetry(c, inv_id)
            for tool in ("investigation_status", "hypotheses", "investigation_journal", "recommendations"):
                _not_found_alike(_error(await c.call_tool(tool, {"investigation_id": ctx["other_inv"]})),
                                 _error(await c.call_tool(tool, {"investigation_id": "inv_0000000000000000"})))
        return inv_id

    holder = {}

    async def run():
        holder["id"] = await main()

    _run(run)
    # the REST API sees the same investigation (the MCP tool is thin over the runtime)
    with live.client(ctx["tokens"][("demo", Role.VIEWER)]) as rc:
        got = rc.get(f"/v1/spaces/demo/investigations/{holder['id']}").json()
        assert got["status"] == "concluded" and got["job"]["status"] == "done"
        assert rc.get(f"/v1/spaces/demo/investigations/{holder['id']}/journal").json()[0]["source"].startswith("mcp:")


def test_http_refuses_another_space_and_a_viewer(live):
    ctx = live.ctx

    async def other_space():
        c, hc = _http(live.url + "/mcp", ctx["tokens"][("other", Role.OPERATOR)], mode="legacy")   # initialize
        async with hc, c:
            demo_invs = live.state.list_investigations("demo", limit=1)
            target = demo_invs[0].id if demo_invs else "inv_x"
            _not_found_alike(_error(await c.call_tool("hypotheses", {"investigation_id": target})),
                             _error(await c.call_tool("hypotheses", {"investigation_id": "inv_0000000000000000"})))
            ov = _json(await c.call_tool("space_overview", {}))
            assert ov["space"] == "other" and ov["telemetry"]["rows"]["metrics"] == 0

    async def viewer():
        c, hc = _http(live.url + "/mcp", ctx["tokens"][("demo", Role.VIEWER)])
        async with hc, c:
            n = len(live.state.list_investigations("demo", limit=1000))
            assert "needs the operator role" in _error(await c.call_tool("start_investigation", {**WINDOW}))
            assert len(live.state.list_investigations("demo", limit=1000)) == n
            assert _json(await c.call_tool("space_overview", {}))["your_role"] == "viewer"

    _run(other_space)
    _run(viewer)


def test_the_mcp_only_http_app(tmp_path):
    """``vigil mcp --transport http``'s app: /mcp and health over a Runtime with its workers."""
    rt = Runtime(App(settings_for(tmp_path)), ServerSettings(workers=1, analysis="thread"))
    ctx = _prepare(rt.app)
    server = uvicorn.Server(uvicorn.Config(http_app(rt), host="127.0.0.1", port=0, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert th.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        assert httpx.get(url + "/readyz").status_code == 200
        assert httpx.post(url + "/mcp", json={}).status_code == 401

        async def main():
            c, hc = _http(url + "/mcp", ctx["tokens"][("demo", Role.OPERATOR)], mode="legacy")
            async with hc, c:
                started = _json(await c.call_tool("start_investigation", {"starting_point": "free-text",
                                                                          "at": "2023-01-29T15:42:00Z"}))
                st = await _until_finished(c, started["id"])
                assert st["status"] == "concluded" and st["top_hypotheses"][0]["resource"] == ROOT
                assert st["job"]["status"] == "done"

        _run(main)
    finally:
        server.should_exit = True
        th.join(30)
