"""SpaceSources: a failing connector leaves partial evidence whose message never carries a secret, and
a replaced connector is closed."""

from __future__ import annotations

from typing import ClassVar

import pytest

from vigil.sources import connector as conn_mod
from vigil.sources.connector import Connector, HttpConfig, SourceError
from vigil.sources.router import SpaceSources
from vigil.store.telemetry import TelemetryStore

SECRET = "s3cr3t-token-0123456789"
CLOSED: list[str] = []


class EchoingConnector(Connector):
    """A backend that echoes the credential in its error page, as some do."""

    kind = "echoing"
    Config: ClassVar = HttpConfig
    roles = frozenset({"logs"})

    def logs(self, start, end, resources=None, contains=None, limit=None):
        raise SourceError(f"HTTP 401: Authorization: Bearer {self.config.token.value()} refused")

    def close(self) -> None:
        CLOSED.append(self.name)


@pytest.fixture()
def sources(monkeypatch):
    monkeypatch.setenv("VIGIL_SECRET_ECHO", SECRET)
    monkeypatch.setitem(conn_mod.KINDS, "echoing", "sources.test_router:EchoingConnector")
    rows = {"shop": [{"name": "echo", "kind": "echoing",
                      "config": {"url": "http://127.0.0.1:9", "token": {"env": "VIGIL_SECRET_ECHO"}}}]}
    store = TelemetryStore(":memory:")
    s = SpaceSources(store, lambda space: rows.get(space, []))
    yield s, rows
    s.close()
    store.close()


def test_a_failing_sources_message_is_partial_evidence_without_the_secret(sources):
    s, _ = sources
    df = s.logs("shop", 0.0, 10.0)
    assert df.empty and df.attrs["rows_by_source"] == {"embedded": 0}
    (problem,) = df.attrs["problems"]
    assert "source 'echo' (echoing) failed on logs: HTTP 401" in problem
    assert SECRET not in problem and "***" in problem
    assert SECRET not in str(s.status)


def test_a_replaced_connector_is_closed(sources, monkeypatch):
    import vigil.sources.router as router
    monkeypatch.setattr(router, "_close_later", lambda conns, after_s=30.0: [c.close() for c in conns])
    s, rows = sources
    CLOSED.clear()
    first, _ = s.connectors("shop")
    rows["shop"] = [{**rows["shop"][0], "config": {**rows["shop"][0]["config"], "timeout_s": 3}}]
    s.invalidate("shop")
    second, _ = s.connectors("shop")
    assert first[0] is not second[0] and CLOSED == ["echo"]
