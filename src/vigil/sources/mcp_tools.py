"""Agent tool calls: after ranking, the investigation calls each space's allowed read-only MCP tools for
its top hypotheses and journals every call.

Two halves, because the investigator may run in an analyst child process that only holds a proxy of
the server's ``SpaceSources``:

- ``agent_tool_calls(connectors, context, pool)`` runs where the connectors live (the server, or the
  CLI process): it calls the tools, bounded per call and per connector, and returns plain journal
  records (picklable dicts). ``SpaceSources.agent_tool_calls(space, context)`` wraps it; the analyst
  proxy forwards that method like the other source queries.
- ``run_agent_tools(source, inv, hypotheses, journal)`` runs in the investigator: it builds the context
  (window + top hypotheses), asks the source, and writes the records to the journal. A source without
  the method (the bare embedded store) is skipped; nothing here can fail an investigation.

A tool's output is untrusted data: it is stored (truncated to the connector's budget) and shown, never
interpreted or followed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from vigil.model import Hypothesis, Investigation, JournalKind
from vigil.sources.mcp_client import SHUTDOWN_GRACE_S


def agent_context(inv: Investigation, hypotheses: Sequence[Hypothesis]) -> dict[str, Any]:
    """What an agent tool template can refer to: the window and the ranked hypotheses (plain values)."""
    w = inv.window
    return {"window": {"start": w.start.timestamp(), "end": w.end.timestamp(), "onset": w.onset.timestamp()},
            "hypotheses": [{"rank": h.rank, "resource": h.resource, "fault_kind": str(h.fault_kind.value),
                            "confidence": h.confidence} for h in hypotheses[:10]]}


def agent_tool_calls(connectors: Sequence[Any], context: dict[str, Any], pool: Executor) -> list[dict[str, Any]]:
    """Journal records of the agent tool calls of every connector that has some, run in parallel."""
    conns = [c for c in connectors if callable(getattr(c, "call_agent_tools", None))
             and getattr(getattr(c, "config", None), "agent_tools", None)]
    futures = [(c, pool.submit(c.call_agent_tools, context)) for c in conns]
    out: list[dict[str, Any]] = []
    for c, fut in futures:
        try:
            out.extend(fut.result(timeout=c.agent_budget_s(context) + SHUTDOWN_GRACE_S + 1.0))
        except FutureTimeout:
            out.append({"kind": "warning", "source": f"mcp:{c.name}", "query": "", "rows": None, "data": {},
                        "message": f"partial evidence: agent tools of {c.name!r} did not finish in time"})
        except Exception as exc:   # noqa: BLE001 - partial evidence beats a failed investigation
            out.append({"kind": "warning", "source": f"mcp:{c.name}", "query": "", "rows": None, "data": {},
                        "message": f"partial evidence: agent tools of {c.name!r} failed: "
                                   f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"})
    return out


def run_agent_tools(source: Any, inv: Investigation, hypotheses: Sequence[Hypothesis],
                    journal: Callable[..., None]) -> int:
    """Ask ``source`` for the agent tool calls of ``inv`` and journal them; returns the number of records."""
    try:
        ask = getattr(source, "agent_tool_calls", None)
    except Exception:   # noqa: BLE001 - a proxy that does not forward the method
        ask = None
    if not callable(ask):
        return 0
    try:
        records = ask(inv.space_id, agent_context(inv, hypotheses))
    except Exception as exc:   # noqa: BLE001 - never fail the investigation over optional evidence
        journal(JournalKind.WARNING, f"partial evidence: agent tool calls failed: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}", source="mcp")
        return 0
    for r in records or []:
        kind = JournalKind.WARNING if r.get("kind") == "warning" else JournalKind.QUERY
        journal(kind, str(r.get("message", ""))[:2000], source=str(r.get("source", "mcp")),
                query=str(r.get("query", "")), rows=r.get("rows"), data=dict(r.get("data") or {}))
    return len(records or [])
