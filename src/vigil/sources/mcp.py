"""Bring your own MCP server: an MCP server registered per space as a source (kind ``mcp``).

The server is reached over stdio (a command Vigil starts per session, with only the environment
variables the config names) or streamable HTTP (a URL checked against the link-local/metadata deny
list, with a bearer token from a ``SecretRef``). It is used two ways:

- declaratively, ``roles``: a tool mapped to a source role (metrics, logs, spans, changes) with an
  argument template and a parser, so the deterministic engine gets frames from it like from any
  connector (e.g. ``git_log`` of ``mcp-server-git`` -> change events);
- ``agent_tools``: read-only tools the investigation calls once per top hypothesis after ranking
  (``vigil.sources.mcp_tools``), each call bounded and journaled, its output kept as untrusted data.

Only tools whose MCP annotations say ``readOnlyHint: true`` are ever called automatically, for either
use: a tool without the annotation is treated as mutating. ``check()`` (registration) refuses a
config naming such a tool or a tool the server does not have; every session re-checks the listing,
because a server can change between registration and use."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Literal

import anyio
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vigil.sources.base import FRAME_COLUMNS
from vigil.sources.connector import Connector, ConnectorConfig, SecretRef, SourceError, empty
from vigil.sources.mcp_client import Endpoint, Session, read_only, result_json, result_text, run_session
from vigil.sources.mcp_parse import (
    AGENT_PLACEHOLDERS,
    TIME_PLACEHOLDERS,
    changed_paths,
    commits_frame,
    parse_git_log,
    parse_json_records,
    parse_prometheus,
    placeholders,
    render,
    resources_for,
    time_values,
)
from vigil.sources.safety import check_url

MAX_TOOL_PAGES = 20
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$"
Scalar = str | int | float | bool


class McpParse(BaseModel):
    """How a mapped tool's output becomes a frame."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["json", "prometheus", "git-log"] = "json"
    records: str = Field(default="", max_length=200, description="json: dotted path to the list of records.")
    fields: dict[str, str] = Field(default_factory=dict, description="json: frame column -> record field.")
    defaults: dict[str, Scalar] = Field(default_factory=dict, description="Fixed values for missing columns.")
    resource_label: str = Field(default="service", description="prometheus: the label naming the resource.")
    name_label: str = Field(default="__name__", description="prometheus: the label naming the metric.")
    paths: dict[str, str] = Field(default_factory=dict, description="git-log: file glob -> resource.")
    message_pattern: str | None = Field(default=None, max_length=500,
                                        description="git-log: regex with a (?P<resource>...) group.")
    show_tool: str = Field(default="git_show", pattern=_NAME, description="git-log: lists a commit's files.")
    show_arguments: dict[str, Any] = Field(default_factory=lambda: {"repo_path": "{repo_path}",
                                                                    "revision": "{sha}"})
    max_commits: int = Field(default=100, ge=1, le=1000)

    @field_validator("message_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                if "resource" not in re.compile(v).groupindex:
                    raise ValueError("message_pattern needs a (?P<resource>...) group")
            except re.error as exc:
                raise ValueError(f"message_pattern is not a valid regex: {exc}") from None
        return v


class RoleMapping(BaseModel):
    """A tool serving a source role for the deterministic engine."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["metrics", "logs", "spans", "changes"]
    tool: str = Field(pattern=_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict)
    parse: McpParse = Field(default_factory=McpParse)

    @model_validator(mode="after")
    def _fits(self) -> RoleMapping:
        fmt = self.parse.format
        if fmt == "prometheus" and self.role != "metrics":
            raise ValueError("parse format prometheus serves the metrics role only")
        if fmt == "git-log" and self.role != "changes":
            raise ValueError("parse format git-log serves the changes role only")
        bad = [c for c in [*self.parse.fields, *self.parse.defaults] if c not in FRAME_COLUMNS[self.role]]
        if bad:
            raise ValueError(f"{self.role} frames have no column {bad[0]!r}")
        return self


class AgentTool(BaseModel):
    """A read-only tool the investigation may call automatically, once per top hypothesis when its
    template uses ``{resource}``/``{fault_kind}``/``{rank}``, else once."""

    model_config = ConfigDict(extra="forbid")
    tool: str = Field(pattern=_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict)


class McpConfig(ConnectorConfig):
    transport: Literal["stdio", "http"]
    # stdio
    command: str | None = Field(default=None, min_length=1, max_length=1000)
    args: list[str] = Field(default_factory=list, max_length=100)
    env: list[str] = Field(default_factory=list, description="Names of Vigil's environment variables to pass.")
    secret_env: dict[str, SecretRef] = Field(default_factory=dict, description="Variables set from secrets.")
    cwd: str | None = Field(default=None, max_length=1000)
    # http
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    token: SecretRef | None = Field(default=None, description="Sent as a bearer token.")
    allow_link_local: bool = False
    verify_tls: bool = True
    # use
    variables: dict[str, Scalar] = Field(default_factory=dict, description="Extra template placeholders.")
    roles: list[RoleMapping] = Field(default_factory=list, max_length=20)
    agent_tools: list[AgentTool] = Field(default_factory=list, max_length=20)
    agent_top: int = Field(default=3, ge=1, le=10, description="Hypotheses an agent tool is called for.")
    max_output_chars: int = Field(default=4000, ge=100, le=200_000, description="Agent tool output budget.")
    max_role_output_chars: int = Field(default=2_000_000, ge=1000, le=50_000_000)

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @model_validator(mode="after")
    def _transport(self) -> McpConfig:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio MCP server needs a command")
            if self.url or self.token:
                raise ValueError("url and token are for transport http")
        else:
            if not self.url:
                raise ValueError("an http MCP server needs a url")
            if self.command or self.args or self.env or self.secret_env or self.cwd:
                raise ValueError("command, args, env, secret_env and cwd are for transport stdio")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("the url must start with http:// or https://")
            check_url(self.url, allow_link_local=self.allow_link_local)
        clash = set(self.variables) & (AGENT_PLACEHOLDERS | {"sha"})
        if clash:
            raise ValueError(f"variable {sorted(clash)[0]!r} shadows a built-in placeholder")
        for m in self.roles:
            self._known(f"roles[{m.tool}].arguments", m.arguments, TIME_PLACEHOLDERS)
            if m.parse.format == "git-log" and m.parse.paths:
                self._known(f"roles[{m.tool}].parse.show_arguments", m.parse.show_arguments,
                            TIME_PLACEHOLDERS | {"sha"})
        for a in self.agent_tools:
            self._known(f"agent_tools[{a.tool}].arguments", a.arguments, AGENT_PLACEHOLDERS)
        return self

    def _known(self, where: str, template: Any, builtin: frozenset[str] | set[str]) -> None:
        unknown = placeholders(template) - set(builtin) - set(self.variables)
        if unknown:
            raise ValueError(f"{where}: unknown placeholder {{{sorted(unknown)[0]}}} "
                             f"(known: {', '.join(sorted(set(builtin) | set(self.variables)))})")


class McpConnector(Connector):
    """An MCP server as a source. ``roles`` is per instance: the roles its config maps tools to."""

    kind = "mcp"
    Config = McpConfig

    def __init__(self, name: str, config: McpConfig) -> None:   # type: ignore[override]
        super().__init__(name, config)
        self.config: McpConfig = config
        self.roles = frozenset(m.role for m in config.roles)    # type: ignore[misc]

    # -- sessions ---------------------------------------------------------------------------------
    def endpoint(self) -> Endpoint:
        c = self.config
        if c.transport == "stdio":
            env = {k: os.environ[k] for k in c.env if k in os.environ}
            secrets = {k: ref.value() for k, ref in c.secret_env.items()}
            env.update(secrets)
            return Endpoint(self.name, "stdio", command=c.command or "", args=list(c.args), env=env, cwd=c.cwd,
                            secrets=tuple(secrets.values()))
        return Endpoint(self.name, "http", url=c.url or "", token=c.token.value() if c.token else None,
                        verify_tls=c.verify_tls, allow_link_local=c.allow_link_local)

    def session(self, body: Any, timeout_s: float | None = None) -> Any:
        return run_session(self.endpoint(), body, timeout_s or self.config.timeout_s)

    def check(self) -> str:
        """Initialize and list tools; refuse mapped tools the server lacks or does not mark read-only."""
        async def body(s: Session) -> tuple[str, str, dict[str, Any]]:
            return s.server_name, s.server_version, await list_tools(s)

        name, version, tools = self.session(body)
        wanted = [("role " + m.role, m.tool) for m in self.config.roles]
        wanted += [("role changes (files)", m.parse.show_tool) for m in self.config.roles
                   if m.parse.format == "git-log" and m.parse.paths]
        wanted += [("agent tool", a.tool) for a in self.config.agent_tools]
        for use, tool in wanted:
            try:
                refuse_unless_read_only(tools, tool, use)
            except SourceError as exc:
                raise SourceError(f"MCP server {self.name!r}: {exc}") from None
        uses = []
        if self.config.roles:
            uses.append("roles " + ", ".join(f"{m.role}<-{m.tool}" for m in self.config.roles))
        if self.config.agent_tools:
            uses.append("agent tools " + ", ".join(a.tool for a in self.config.agent_tools))
        ro = sum(1 for t in tools.values() if read_only(t))
        return (f"MCP server {name} {version}".rstrip() + f" answered: {len(tools)} tools ({ro} read-only)"
                + (f"; {'; '.join(uses)}" if uses else ""))

    # -- roles ------------------------------------------------------------------------------------
    def metrics(self, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        df = self._role("metrics", start, end)
        if resources is not None:
            df = df[df["resource"].isin(resources)]
        if names is not None:
            df = df[df["name"].isin(names)]
        return df.reset_index(drop=True)

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        df = self._role("logs", start, end)
        if resources is not None:
            df = df[df["resource"].isin(resources)]
        if contains:
            df = df[df["body"].astype(str).str.contains(contains, regex=False)]
        df = df.sort_values("ts").reset_index(drop=True)
        return df.head(limit) if limit is not None else df

    def spans(self, start: float, end: float) -> pd.DataFrame:
        return self._role("spans", start, end)

    def changes(self, start: float, end: float) -> pd.DataFrame:
        return self._role("changes", start, end)

    def _role(self, role: str, start: float, end: float) -> pd.DataFrame:
        maps = [m for m in self.config.roles if m.role == role]
        if not maps:
            return empty(role)
        values = {**time_values(start, end), **self.config.variables}
        limit = self.config.max_role_output_chars

        async def body(s: Session) -> list[pd.DataFrame]:
            tools = await list_tools(s)
            frames = []
            for m in maps:
                refuse_unless_read_only(tools, m.tool, f"role {role}")
                result = await call_tool(s, m.tool, render(m.arguments, values))
                frames.append(await self._parse(s, tools, m, result, values, limit))
            return frames

        frames = [f for f in self.session(body) if len(f)]
        df = pd.concat(frames, ignore_index=True) if frames else empty(role)
        tcol = "start" if role == "spans" else "ts"
        return df[(df[tcol] >= start) & (df[tcol] < end)].reset_index(drop=True)

    async def _parse(self, s: Session, tools: dict[str, Any], m: RoleMapping, result: Any,
                     values: dict[str, Any], limit: int) -> pd.DataFrame:
        p = m.parse
        if p.format == "git-log":
            text = result_text(result)[:limit]
            commits = parse_git_log(text)[: p.max_commits]
            attributed = []
            for c in commits:
                paths = None
                if p.paths:
                    refuse_unless_read_only(tools, p.show_tool, "role changes (files)")
                    shown = await call_tool(s, p.show_tool, render(p.show_arguments, {**values, "sha": c.sha}))
                    paths = changed_paths(result_text(shown)[:limit])
                attributed.append((c, resources_for(c, paths, p.paths, p.message_pattern,
                                                    _str(p.defaults.get("resource")))))
            return commits_frame(attributed, _str(p.defaults.get("kind")) or "commit")
        if len(result_text(result)) > limit:
            raise SourceError(f"tool {m.tool} returned more than {limit} characters")
        try:
            data = result_json(result)
            if p.format == "prometheus":
                return parse_prometheus(data, p.resource_label, p.name_label, p.defaults)
            return parse_json_records(m.role, data, p.records, p.fields, p.defaults)
        except ValueError as exc:
            raise SourceError(f"tool {m.tool}: {exc}") from None

    # -- agent tools ------------------------------------------------------------------------------
    def agent_budget_s(self, context: dict[str, Any]) -> float:
        """The longest the agent tool calls for ``context`` may take: handshake plus one timeout per call."""
        return self.config.timeout_s * (1 + len(self.agent_plan(context)))

    def agent_plan(self, context: dict[str, Any]) -> list[tuple[AgentTool, dict[str, Any]]]:
        """(tool, arguments) pairs to call for an investigation ``context`` (see ``mcp_tools``)."""
        w = context.get("window") or {}
        start, end, onset = float(w.get("start", 0)), float(w.get("end", 0)), float(w.get("onset", 0))
        base = {**time_values(start, end), "onset": round(onset, 3), "onset_iso": time_values(onset, onset)["start_iso"],
                **self.config.variables}
        hyps = list(context.get("hypotheses") or [])[: self.config.agent_top]
        plan = []
        for a in self.config.agent_tools:
            if placeholders(a.arguments) & {"resource", "fault_kind", "rank"}:
                for h in hyps:
                    vals = {**base, "resource": h.get("resource", ""), "fault_kind": h.get("fault_kind", ""),
                            "rank": h.get("rank", 0)}
                    plan.append((a, render(a.arguments, vals)))
            else:
                plan.append((a, render(a.arguments, {**base, "resource": "", "fault_kind": "", "rank": 0})))
        return plan

    def call_agent_tools(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        """Call the planned read-only tools in one session; one journal record per call (and per refusal).
        A failing server yields a warning record, never an exception."""
        plan = self.agent_plan(context)
        if not plan:
            return []
        budget = self.config.max_output_chars
        per_call = self.config.timeout_s
        src = f"mcp:{self.name}"

        async def body(s: Session) -> list[dict[str, Any]]:
            tools = await list_tools(s)
            out = []
            for a, args in plan:
                query = f"{a.tool} {json.dumps(args, sort_keys=True, default=str)}"[:1000]
                try:
                    refuse_unless_read_only(tools, a.tool, "agent tool")
                except SourceError as exc:
                    out.append(_record("warning", f"partial evidence: {exc}", src, query,
                                       {"tool": a.tool, "arguments": args, "outcome": "refused"}))
                    continue
                t0 = time.monotonic()
                outcome, text, error = "ok", "", ""
                with anyio.move_on_after(per_call) as scope:
                    try:
                        result = await call_tool(s, a.tool, args, allow_error=True)
                        text = result_text(result)
                        outcome = "tool error" if getattr(result, "is_error", False) else "ok"
                    except SourceError as exc:
                        outcome, error = "failed", str(exc)
                if scope.cancelled_caught:
                    outcome, error = "timeout", f"no answer within {per_call:g} s"
                data = {"tool": a.tool, "arguments": args, "outcome": outcome, "chars": len(text),
                        "truncated": len(text) > budget, "output": text[:budget], "untrusted": True,
                        "seconds": round(time.monotonic() - t0, 3)}
                if error:
                    data["error"] = error
                msg = (f"MCP tool {a.tool}: {outcome}, {len(text)} chars"
                       + (f" (kept {budget})" if len(text) > budget else "") + (f": {error}" if error else ""))
                out.append(_record("query", msg, src, query, data, rows=1 if outcome == "ok" else 0))
                if outcome != "ok":
                    out.append(_record("warning", f"partial evidence: MCP tool {a.tool} of {self.name!r} "
                                       f"{outcome}" + (f": {error}" if error else ""), src, query,
                                       {"tool": a.tool, "outcome": outcome}))
            return out

        try:
            return self.session(body, self.agent_budget_s(context))
        except SourceError as exc:
            return [_record("warning", f"partial evidence: agent tools of {self.name!r} not called: {exc}",
                            src, ", ".join(a.tool for a, _ in plan)[:1000], {"outcome": "failed"})]


# -- helpers ----------------------------------------------------------------------------------------
async def list_tools(s: Session) -> dict[str, Any]:
    """name -> Tool, following pagination (bounded)."""
    out: dict[str, Any] = {}
    cursor = None
    for _ in range(MAX_TOOL_PAGES):
        page = await s.client.list_tools(cursor=cursor)
        for t in page.tools:
            out[t.name] = t
        cursor = page.next_cursor
        if not cursor:
            break
    return out


def refuse_unless_read_only(tools: dict[str, Any], tool: str, use: str) -> None:
    if tool not in tools:
        raise SourceError(f"the server has no tool {tool!r} ({use}); it has: {', '.join(sorted(tools))[:300]}")
    if not read_only(tools[tool]):
        raise SourceError(f"tool {tool!r} ({use}) is not annotated readOnlyHint=true, so it is treated as "
                          "mutating and never called automatically")


async def call_tool(s: Session, tool: str, args: dict[str, Any], allow_error: bool = False) -> Any:
    from mcp.shared.exceptions import MCPError
    try:
        result = await s.client.call_tool(tool, args)
    except MCPError as exc:
        raise SourceError(f"tool {tool} failed: error {exc.code}: {exc.message[:200]}") from None
    if getattr(result, "is_error", False) and not allow_error:
        raise SourceError(f"tool {tool} failed: {result_text(result).strip()[:200]}")
    return result


def _record(kind: str, message: str, source: str, query: str, data: dict[str, Any],
            rows: int | None = None) -> dict[str, Any]:
    return {"kind": kind, "message": message, "source": source, "query": query, "rows": rows, "data": data}


def _str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)
