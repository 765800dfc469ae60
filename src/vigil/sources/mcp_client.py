"""A synchronous, bounded MCP client session for the connector framework.

The MCP SDK (mcp 2.x) is async; connector methods are called synchronously from worker threads. Each
``run_session`` call therefore runs one private event loop (``anyio.run``) in a dedicated thread, opens
one session (stdio child process or streamable HTTP), runs the caller's coroutine under a hard deadline
(``anyio.fail_after``) and closes the session. The SDK's stdio shutdown closes the child's stdin,
then terminates and kills its process tree with bounded waits, so a child never outlives the call; the
caller waits at most ``timeout + SHUTDOWN_GRACE_S`` even if a server ignores everything.

Sessions use the initialize handshake (``mode="legacy"``): every MCP server speaks it, including the
2026-era ones that also serve the sessionless protocol. Errors become one-line ``SourceError``s that
say what went wrong (command not found, HTTP 401, handshake failure, timeout) and never carry the token.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from vigil.sources.connector import SourceError

T = TypeVar("T")

# The SDK's stdio shutdown: 0.5 s flush + 2 s for a voluntary exit + 2 s after SIGTERM + the kill.
SHUTDOWN_GRACE_S = 6.0


@dataclass
class Endpoint:
    """Where a server is: a stdio command or a streamable HTTP URL. ``token`` is the resolved bearer
    token (kept in memory only, never logged)."""

    name: str
    transport: str                      # "stdio" | "http"
    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    token: str | None = field(default=None, repr=False)
    verify_tls: bool = True

    def where(self) -> str:
        return f"command {self.command!r}" if self.transport == "stdio" else f"{self.url}"


@dataclass
class Session:
    """What the coroutine passed to ``run_session`` gets: the connected client and what the server said
    about itself."""

    client: Any
    server_name: str
    server_version: str


def run_session(ep: Endpoint, body: Callable[[Session], Awaitable[T]], timeout_s: float) -> T:
    """Open a session to ``ep``, run ``body`` in it, close it; all within ``timeout_s`` (plus the bounded
    shutdown). Raises ``SourceError`` with a one-line message on any failure."""
    box: dict[str, Any] = {}
    http_errors: list[int] = []       # statuses >= 400 of the POSTs (the SDK turns them into -32603)
    errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") if ep.transport == "stdio" else None

    async def main() -> T:
        with anyio.fail_after(timeout_s):
            async with _Connected(ep, timeout_s, errlog, http_errors) as client:
                info = client.server_info
                sess = Session(client, getattr(info, "name", "") or "unnamed server",
                               getattr(info, "version", "") or "")
                return await body(sess)

    def target() -> None:
        try:
            box["value"] = anyio.run(main)
        except BaseException as exc:   # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"vigil-mcp-{ep.name}", daemon=True)
    try:
        worker.start()
        worker.join(timeout_s + SHUTDOWN_GRACE_S)
        if worker.is_alive():
            raise SourceError(f"MCP server {ep.name!r} did not answer within {timeout_s:g} s")
        if "error" in box:
            why = (http_status(http_errors[0]) if http_errors
                   else describe(box["error"], timeout_s, _tail(errlog)))
            raise SourceError(f"MCP server {ep.name!r} ({ep.where()}): {why}") from None
        return box["value"]
    finally:
        if errlog is not None and not worker.is_alive():
            errlog.close()


class _Connected:
    """Async context manager yielding a connected ``mcp.client.Client`` for ``ep``."""

    def __init__(self, ep: Endpoint, timeout_s: float, errlog: Any, http_errors: list[int]) -> None:
        self.ep, self.timeout_s, self.errlog, self.http_errors = ep, timeout_s, errlog, http_errors
        self._http: Any = None
        self._client: Any = None

    async def __aenter__(self) -> Any:
        from mcp.client.client import Client
        from mcp_types import Implementation

        ep = self.ep
        if ep.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client
            params = StdioServerParameters(command=ep.command, args=list(ep.args), env=dict(ep.env), cwd=ep.cwd)
            transport = stdio_client(params, errlog=self.errlog)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client
            headers = {"Authorization": f"Bearer {ep.token}"} if ep.token else {}
            seen = self.http_errors

            async def note(response: Any) -> None:
                if response.status_code >= 400 and response.request.method == "POST":
                    seen.append(response.status_code)
            self._http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(self.timeout_s),
                                            verify=ep.verify_tls, event_hooks={"response": [note]})
            transport = streamable_http_client(ep.url, http_client=self._http)
        self._client = Client(transport, mode="legacy", cache=None, read_timeout_seconds=self.timeout_s,
                              client_info=Implementation(name="vigil", version=_version()))
        try:
            return await self._client.__aenter__()
        except BaseException:
            await self._close_http()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._client.__aexit__(*exc)
        finally:
            await self._close_http()

    async def _close_http(self) -> None:
        if self._http is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await self._http.aclose()


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("vigil")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "0"


def _tail(errlog: Any, limit: int = 200) -> str:
    """The last non-empty line a stdio server wrote to stderr (often the real reason it died)."""
    if errlog is None:
        return ""
    try:
        errlog.flush()
        errlog.seek(0, os.SEEK_END)
        size = errlog.tell()
        errlog.seek(max(0, size - 4000))
        lines = [ln.strip() for ln in errlog.read().splitlines() if ln.strip()]
    except (OSError, ValueError):
        return ""
    return lines[-1][:limit] if lines else ""


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (task groups wrap the real cause)."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(leaves(sub))
        return out
    return [exc]


def describe(exc: BaseException, timeout_s: float, stderr_tail: str = "") -> str:
    """One line saying why a session failed, for an operator, without secrets."""
    import httpx2
    from mcp.shared.exceptions import MCPError

    found = leaves(exc)
    # the most telling cause first: an HTTP status or a spawn error beats the stream closing after it
    for e in found:
        if isinstance(e, httpx2.HTTPStatusError):
            return http_status(e.response.status_code)
    for e in found:
        if isinstance(e, FileNotFoundError):
            return f"command not found: {e.filename or e}" if e.filename else "command or working directory not found"
        if isinstance(e, PermissionError):
            return f"permission denied starting the command: {e.filename or e}"
        if isinstance(e, httpx2.ConnectError):
            return f"cannot connect: {_first_line(e) or 'connection refused'}"
        if isinstance(e, httpx2.TimeoutException):
            return f"did not answer within {timeout_s:g} s"
    for e in found:
        if isinstance(e, TimeoutError):
            return f"did not answer within {timeout_s:g} s" + (f"; its stderr: {stderr_tail}" if stderr_tail else "")
        if isinstance(e, MCPError):
            if e.code == -32000:    # CONNECTION_CLOSED: the server went away (exited, crashed, not MCP)
                return ("the server closed the connection (did it exit? is it an MCP server?)"
                        + (f"; its stderr: {stderr_tail}" if stderr_tail else ""))
            if "401" in e.message or "nauthorized" in e.message:
                return f"unauthorized (check the bearer token): {e.message[:200]}"
            return f"the server answered error {e.code}: {e.message[:200]}"
        if isinstance(e, SourceError):
            return str(e)
    e = found[0] if found else exc
    if isinstance(e, anyio.EndOfStream | anyio.ClosedResourceError | anyio.BrokenResourceError | EOFError):
        text = "the server closed the connection during the handshake (is it an MCP server?)"
    else:
        text = f"handshake or call failed: {type(e).__name__}: {_first_line(e)}".rstrip(": ")
    return text + (f"; its stderr: {stderr_tail}" if stderr_tail else "")


def http_status(code: int) -> str:
    hint = {401: " (unauthorized: check the bearer token)", 403: " (forbidden: check the bearer token)",
            404: " (no MCP endpoint at this URL)", 405: " (no MCP endpoint at this URL)"}.get(code, "")
    return f"HTTP {code}{hint}"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else ""


# -- tool results -----------------------------------------------------------------------------------
def result_text(result: Any) -> str:
    """The text of a ``CallToolResult``: its text parts joined; structured content as JSON when the
    server sent no text. Images and blobs are named, not decoded."""
    parts: list[str] = []
    for item in getattr(result, "content", None) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind == "resource":
            res = item.resource
            parts.append(getattr(res, "text", None) or f"[resource {getattr(res, 'uri', '')}]")
        else:
            parts.append(f"[{kind or 'content'}]")
    if not parts and getattr(result, "structured_content", None) is not None:
        return json.dumps(result.structured_content, default=str)
    return "\n".join(parts)


def result_json(result: Any) -> Any:
    """The JSON value of a ``CallToolResult``: its structured content if any (unwrapping the SDK's
    ``{"result": ...}`` wrapper of non-object return values), else its text parsed as JSON."""
    sc = getattr(result, "structured_content", None)
    if isinstance(sc, dict) and list(sc) == ["result"]:
        sc = sc["result"]
    if sc is not None and not isinstance(sc, str):
        return sc
    text = sc if isinstance(sc, str) else result_text(result)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"the tool's output is not JSON ({exc.msg} at char {exc.pos})") from None


def read_only(tool: Any) -> bool:
    """Whether the server says the tool is read-only. No annotation means mutating."""
    ann = getattr(tool, "annotations", None)
    return bool(ann is not None and getattr(ann, "read_only_hint", None) is True)
