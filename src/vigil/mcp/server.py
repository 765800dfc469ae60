"""The MCP server (mcp SDK 2.x ``MCPServer``): Vigil's tools for an agent, each confined to the space
of the caller's token. The token comes from ``VIGIL_TOKEN`` on stdio and from the bearer header of
each HTTP request; it is resolved again at every call, so a revoked token stops working at once
(stdio) or within the token cache's seconds (HTTP). Read-only tools say so in their annotations."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from vigil import __version__
from vigil.errors import VigilError
from vigil.mcp.backend import Backend, Caller
from vigil.mcp.shape import dumps
from vigil.mcp.tools import VigilTools

log = logging.getLogger("vigil.mcp")

# Where a call's token secret comes from: the stdio process's VIGIL_TOKEN, or the HTTP request's header.
SecretOf = Callable[[Context], "str | None"]

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# telemetry queries may reach the space's connectors (Prometheus, CloudWatch, ...): still read-only
READ_SOURCES = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                               open_world_hint=True)
ASK = ToolAnnotations(title="Ask about an investigation", read_only_hint=False, destructive_hint=False,
                      idempotent_hint=False, open_world_hint=False)
PROPOSE = ToolAnnotations(title="Propose a directed action", read_only_hint=False, destructive_hint=False,
                          idempotent_hint=True, open_world_hint=False)
START = ToolAnnotations(title="Start an investigation", read_only_hint=False, destructive_hint=False,
                        idempotent_hint=False, open_world_hint=False)

INSTRUCTIONS = """Vigil is an on-call agent that investigates production incidents: it correlates metrics, logs,
traces and changes over the service topology and ranks root-cause hypotheses with evidence.
Every tool works inside the one space your token belongs to. Start with space_overview (what the
space holds, its time range, recent alerts and investigations). To investigate: start_investigation
(operator role), then investigation_status until it is concluded, then hypotheses (ranked causes with
evidence and the propagation path, cause first) and recommendations. query_metrics / query_logs /
query_traces and topology let you check the evidence yourself. Times are ISO 8601 UTC
(2023-01-29T15:42:00Z) or epoch seconds; query windows span at most a day (traces: 6 hours). Results are bounded:
'truncated' says when rows were left out."""

InvId = Annotated[str, Field(description="The investigation's id (inv_...), from start_investigation, "
                                         "list_investigations or space_overview.")]
Start = Annotated[str | None, Field(description="Window start, ISO 8601 UTC or epoch seconds. Default: the "
                                                "investigation's window if investigation_id is given, else the "
                                                "last hour of the space's telemetry.")]
End = Annotated[str | None, Field(description="Window end (exclusive), ISO 8601 UTC or epoch seconds.")]
Resources = Annotated[list[str] | None, Field(description="Only these resources (service names), e.g. "
                                                          "['ts-preserve-service']. Default: all.")]
ForInv = Annotated[str | None, Field(description="Use this investigation's window when start/end are not given.")]


def _result(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=dumps(data))], structured_content=data)


def build_server(backend: Backend, secret_of: SecretOf) -> MCPServer:
    """An MCPServer whose every tool resolves the caller's token first (and refuses without one)."""
    tools = VigilTools(backend)
    mcp = MCPServer("vigil", title="Vigil", version=__version__, instructions=INSTRUCTIONS,
                    description="Vigil's investigations, hypotheses and telemetry, scoped to your token's space.",
                    log_level="WARNING")

    def run(ctx: Context, fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> CallToolResult:
        secret = secret_of(ctx)
        tok = backend.resolve(secret) if secret else None
        if tok is None:
            raise ToolError("invalid or revoked token")
        try:
            return _result(fn(Caller(tok), *args, **kw))
        except VigilError as exc:
            raise ToolError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except ToolError:
            raise
        except Exception as exc:        # noqa: BLE001 - one line to the agent, the detail to our log
            log.exception("tool %s failed", getattr(fn, "__name__", "?"))
            raise ToolError(f"internal error ({type(exc).__name__}); the server log has the detail") from None

    @mcp.tool(annotations=READ, structured_output=False)
    def space_overview(ctx: Context) -> CallToolResult:
        """What your token's space holds: your role (and whether you may start investigations), the time range
        and row counts of its telemetry, how many services the topology has, its data sources, the 10 most
        recent alerts and investigations. Call this first; recorded incidents may lie in the past, so use
        its time range for the other tools' windows."""
        return run(ctx, tools.space_overview)

    @mcp.tool(annotations=READ, structured_output=False)
    def list_investigations(
        ctx: Context,
        status: Annotated[str | None, Field(description="Only this status: queued, running, concluded, "
                                                        "inconclusive, failed, cancelled.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many (newest first).")] = 20,
        offset: Annotated[int, Field(ge=0, le=100_000, description="Skip this many (paging).")] = 0,
    ) -> CallToolResult:
        """The space's investigations, newest first: id, status, onset time and one-line summary."""
        return run(ctx, tools.list_investigations, status, limit, offset)

    @mcp.tool(annotations=START, structured_output=False)
    def start_investigation(
        ctx: Context,
        starting_point: Annotated[str, Field(description=(
            "Where to start: 'latest-alarm' (the latest alert in the window), 'high-cpu' (the CPU series that "
            "rose the most), 'error-rate-spike' (when failed spans and error logs stepped up), or 'free-text' "
            "(the time given in 'at', with your description in 'text').")
        )] = "latest-alarm",
        at: Annotated[str | None, Field(description="For 'free-text': when the incident started (ISO 8601 UTC or "
                                                    "epoch seconds).")] = None,
        start: Annotated[str | None, Field(description="Start of the window searched for the starting point. "
                                                       "Default: one hour before 'end'.")] = None,
        end: Annotated[str | None, Field(description="End of that window. Default: the end of the space's "
                                                     "telemetry (or now).")] = None,
        text: Annotated[str, Field(max_length=2000, description="What was reported, in words (kept in the "
                                                                "journal).")] = "",
    ) -> CallToolResult:
        """Start a root-cause investigation in your space (needs the operator role; a viewer token is refused).
        It runs in the background: the answer gives its id and status ('queued' or 'running'); poll
        investigation_status until it is 'concluded' (or 'inconclusive'/'failed'), usually seconds, then read
        hypotheses. Not read-only: it records a new investigation and its journal."""
        return run(ctx, tools.start_investigation, starting_point, at, start, end, text)

    @mcp.tool(annotations=READ, structured_output=False)
    def investigation_status(ctx: Context, investigation_id: InvId) -> CallToolResult:
        """An investigation's status (queued, running, concluded, inconclusive, failed, cancelled), its summary,
        trigger and time window (onset = the suspected start), and its top 3 hypotheses once there are any.
        An id from another space is 'not found'."""
        return run(ctx, tools.investigation_status, investigation_id)

    @mcp.tool(annotations=READ, structured_output=False)
    def investigation_journal(
        ctx: Context, investigation_id: InvId,
        after_seq: Annotated[int, Field(ge=0, description="Only entries after this sequence number (paging: "
                                                          "pass the previous answer's next_after_seq).")] = 0,
        limit: Annotated[int, Field(ge=1, le=200, description="At most this many entries.")] = 50,
    ) -> CallToolResult:
        """The investigation's append-only journal, in order: every query it made (and how many rows came back),
        every analysis step and what it found, warnings (missing or partial evidence) and the conclusion.
        Paged with after_seq; has_more says whether more entries follow."""
        return run(ctx, tools.investigation_journal, investigation_id, after_seq, limit)

    @mcp.tool(annotations=READ, structured_output=False)
    def hypotheses(
        ctx: Context, investigation_id: InvId,
        limit: Annotated[int, Field(ge=1, le=20, description="The top this many hypotheses.")] = 5,
        evidence_per_hypothesis: Annotated[int, Field(ge=1, le=20, description="At most this many pieces of "
                                                                              "evidence each.")] = 5,
    ) -> CallToolResult:
        """The ranked root-cause hypotheses of an investigation, best first: the resource (service), the fault
        kind (cpu, memory, network-delay, error, logic, change, ...), a calibrated confidence (0-1), why, the
        propagation path from the cause to the symptom (cause first), and the evidence (metric shifts, log
        patterns, trace changes, changes near the onset), with people's judgements (accepted/discarded)."""
        return run(ctx, tools.hypotheses, investigation_id, limit, evidence_per_hypothesis)

    @mcp.tool(annotations=READ, structured_output=False)
    def recommendations(
        ctx: Context, investigation_id: InvId,
        limit: Annotated[int, Field(ge=1, le=10, description="Mitigations for the top this many hypotheses.")] = 3,
    ) -> CallToolResult:
        """What to do about an investigation's findings: a mitigation plan per top hypothesis (steps, each marked
        mutating or not, with a verification and a rollback) and space-level recommendations (a recurring
        cause, a monitoring gap, deploy practice). Derived from the hypotheses and evidence; Vigil runs none of
        it - steps marked mutating need a person's decision."""
        return run(ctx, tools.recommendations, investigation_id, limit)

    @mcp.tool(annotations=READ, structured_output=False)
    def mitigation(
        ctx: Context, investigation_id: InvId,
        limit: Annotated[int, Field(ge=1, le=10, description="Specs for the top this many hypotheses.")] = 3,
    ) -> CallToolResult:
        """Mitigation specs (schema vigil.mitigation/v1): per hypothesis, the change named as the cause, immediate
        steps with commands as argv lists (validated, shown shell-quoted), the directed action a step maps to,
        how to verify recovery (series, threshold, duration), how to undo it, risks and matching runbooks."""
        return run(ctx, tools.mitigation, investigation_id, limit)

    @mcp.tool(annotations=ASK, structured_output=False)
    def ask(
        ctx: Context, investigation_id: InvId,
        question: Annotated[str, Field(min_length=1, max_length=500, description="e.g. 'which logs did you "
                                       "analyze?', 'why not payments?', 'what changed before the onset?', 'focus on "
                                       "payments and rerun' (operator).")],
    ) -> CallToolResult:
        """Ask about an investigation; answers cite journal entries ([J<seq>]). Recorded in the journal; a
        'focus on X' / 'exclude X' question from an operator starts a linked, steered rerun."""
        return run(ctx, tools.ask, investigation_id, question)

    @mcp.tool(annotations=PROPOSE, structured_output=False)
    def propose_action(
        ctx: Context, investigation_id: InvId,
        kind: Annotated[str, Field(description="kubernetes-rollout-undo, kubernetes-scale, git-revert, "
                                               "argocd-rollback or webhook (as a mitigation spec's step names it).")],
        args: Annotated[dict[str, Any], Field(description="The action's exact arguments (from the spec).")],
        hypothesis_id: Annotated[str, Field(max_length=80, description="The hypothesis it mitigates.")] = "",
    ) -> CallToolResult:
        """Propose a directed action (operator role). It runs nothing: a person approves it in the console, the
        API or Slack, which mints a single-use token bound to these exact arguments; the space must have
        turned the action kind on."""
        return run(ctx, tools.propose_action, investigation_id, kind, args, hypothesis_id)

    @mcp.tool(annotations=READ, structured_output=False)
    def postmortem(ctx: Context, investigation_id: InvId) -> CallToolResult:
        """The post-incident report as Markdown: timeline, impact, root cause and evidence, actions taken and
        recommendations."""
        return run(ctx, tools.postmortem, investigation_id)

    @mcp.tool(annotations=READ, structured_output=False)
    def prevention_backlog(
        ctx: Context, limit: Annotated[int, Field(ge=1, le=100, description="The top this many items.")] = 20,
    ) -> CallToolResult:
        """The space's prevention backlog (recurring causes, monitoring gaps, single points of failure, deploy
        practice, configuration drift), ranked by severity x likelihood x detectability, with statuses."""
        return run(ctx, tools.prevention_backlog, limit)

    @mcp.tool(annotations=READ_SOURCES, structured_output=False)
    def query_metrics(
        ctx: Context, start: Start = None, end: End = None, resources: Resources = None,
        names: Annotated[list[str] | None, Field(description="Only these metric names (as space_overview / a "
                                                             "summary lists them). Default: all.")] = None,
        investigation_id: ForInv = None,
        raw: Annotated[bool, Field(description="False: one summary row per series (points, min, mean, max, "
                                               "first, last). True: the points themselves.")] = False,
        limit: Annotated[int, Field(ge=1, le=2000, description="At most this many rows.")] = 100,
    ) -> CallToolResult:
        """Metrics of your space in a window (at most a day), through the space's sources (the embedded store
        plus connectors such as Prometheus or CloudWatch). By default one summary row per (resource, metric)
        series; raw=true returns points. 'problems' lists sources that failed or were slow."""
        return run(ctx, tools.query_metrics, start, end, resources, names, investigation_id, raw, limit)

    @mcp.tool(annotations=READ_SOURCES, structured_output=False)
    def query_logs(
        ctx: Context, start: Start = None, end: End = None, resources: Resources = None,
        contains: Annotated[str | None, Field(max_length=300, description="Only lines containing this text "
                                                                          "(case-sensitive).")] = None,
        level: Annotated[str | None, Field(description="Only this level, e.g. ERROR or WARN.")] = None,
        investigation_id: ForInv = None,
        limit: Annotated[int, Field(ge=1, le=500, description="At most this many lines (oldest first).")] = 50,
    ) -> CallToolResult:
        """Log lines of your space in a window (at most a day), oldest first, through the space's sources
        (embedded store, Loki, OpenSearch, CloudWatch Logs, ...); bodies are cut at 400 characters."""
        return run(ctx, tools.query_logs, start, end, resources, contains, level, investigation_id, limit)

    @mcp.tool(annotations=READ_SOURCES, structured_output=False)
    def query_traces(
        ctx: Context, start: Start = None, end: End = None, resources: Resources = None,
        operation: Annotated[str | None, Field(description="Only operations containing this text.")] = None,
        errors_only: Annotated[bool, Field(description="Only failed spans.")] = False,
        trace_id: Annotated[str | None, Field(description="Only this trace (returns its spans).")] = None,
        investigation_id: ForInv = None,
        raw: Annotated[bool, Field(description="False: one row per (service, operation) with span and error "
                                               "counts and p50/p95/max duration. True: the spans.")] = False,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many rows.")] = 50,
    ) -> CallToolResult:
        """Trace spans of your space in a window (at most 6 hours), through the space's sources (embedded store,
        Tempo, Jaeger, ...). By default a per-operation summary (most errors first); raw=true or a trace_id
        returns spans."""
        return run(ctx, tools.query_traces, start, end, resources, operation, errors_only, trace_id,
                   investigation_id, raw, limit)

    @mcp.tool(annotations=READ_SOURCES, structured_output=False)
    def topology(
        ctx: Context,
        resource: Annotated[str | None, Field(description="Only this resource and its direct neighbours "
                                                          "(callers and callees).")] = None,
    ) -> CallToolResult:
        """The space's service topology: resources and typed edges (calls, runs-on, depends-on) with where each
        edge was learned (traces, kubernetes, config, dataset). With a resource: its callers and callees."""
        return run(ctx, tools.topology, resource)

    return mcp
