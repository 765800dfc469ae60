"""A synchronous, bounded MCP client session for the connector framework.

The MCP SDK (mcp 2.x) is async; connector methods are called synchronously from worker threads. Each
``run_session`` call therefore runs one private event loop (``anyio.run``) in a dedicated thread, opens
one session (stdio child process or streamable HTTP), runs the caller's coroutine under a hard deadline
(``anyio.fail_after``) and closes the session. The SDK's stdio shutdown closes the child's stdin,
then terminates and kills its process tree with bounded waits, so a child never outlives the call; the
caller waits at most ``timeout + SHUTDOWN_GRACE_S`` even if a server ignores everything. If the
worker thread is still busy then (its event loop blocked, or a kill that has not landed yet), the
caller SIGKILLs the child's process group itself and leaves; the stderr file is closed by whichever
of the caller and the worker is done with it last, never under a worker that may still use it.

Sessions use the initialize handshake (``mode="legacy"``): every MCP server speaks it, including the
2026-era ones that also serve the sessionless protocol. Errors become one-line ``SourceError``s that
say what went wrong (command not found, HTTP 401, handshake failure, timeout) and never carry the token.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from vigil.sources.connector import SourceError

T = TypeVar("T")

# The SDK's stdio shutdown: 0.5 s flush + 2 s for a voluntary exit + 2 s after SIGTERM + the kill (its
# further 2 s reap wait only runs out for an unkillable process; the caller's own SIGKILL covers that).
SHUTDOWN_GRACE_S = 6.0
STDERR_TAIL_BYTES = 4000     # the most of a stdio server's stderr ever read back (its last line is shown)
MASK = "***"


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
    secrets: tuple[str, ...] = field(default=(), repr=False)   # values masked in messages (secret env)
    allow_link_local: bool = False      # else every HTTP connection's address is vetted (safety.py)

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
    secrets = tuple(v for v in (ep.token, *ep.secrets) if v)
    try:
        errlog = (tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
                  if ep.transport == "stdio" else None)
    except OSError as exc:
        raise SourceError(f"MCP server {ep.name!r}: cannot create a file for its stderr: "
                          f"{exc.strerror or type(exc).__name__}") from None
    # errlog has two holders, this thread and the worker: the last to let go closes it. The caller
    # never closes it under a live worker (the SDK may not have spawned the child yet, and a closed,
    # reused descriptor number would hand the child some other file as its stderr).
    holders = _Holders(errlog, 2)

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
            box["stderr"] = _tail(errlog, secrets=secrets)   # the child is stopped: its stderr is complete
        finally:
            holders.release()

    worker = threading.Thread(target=target, name=f"vigil-mcp-{ep.name}", daemon=True)
    try:
        worker.start()
    except BaseException:
        holders.release(2)             # no worker: nobody else holds errlog
        raise
    try:
        worker.join(timeout_s + SHUTDOWN_GRACE_S)
        if worker.is_alive():
            # abandoned: the worker closes errlog when it ends; its child must not wait for that
            _kill_children_holding(errlog)
            raise SourceError(f"MCP server {ep.name!r} did not answer within {timeout_s:g} s")
        if "error" in box:
            why = (http_status(http_errors[0]) if http_errors
                   else describe(box["error"], timeout_s, box.get("stderr", "")))
            raise SourceError(_mask(f"MCP server {ep.name!r} ({ep.where()}): {why}", secrets)) from None
        return box["value"]
    finally:
        holders.release()


class _Holders:
    """Closes ``f`` once every holder has released it (from any thread, exactly once)."""

    def __init__(self, f: Any, count: int) -> None:
        self.f, self.count, self.lock = f, count, threading.Lock()

    def release(self, n: int = 1) -> None:
        with self.lock:
            self.count -= n
            last = self.count == 0
        if last and self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass


def _kill_children_holding(errlog: Any) -> None:
    """SIGKILL the process group of every child of this process that has ``errlog`` open: the stdio
    server of an abandoned session (its stderr is the file; nothing else inherits it). Linux ``/proc``,
    best effort and bounded; the worker's event loop reaps the child when it runs again."""
    if errlog is None or not os.path.isdir("/proc/self/fd"):
        return
    try:
        st = os.fstat(errlog.fileno())
    except (OSError, ValueError):
        return
    me = os.getpid()
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid != me:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except (OSError, ValueError, IndexError):
            continue
        for fd in fds:
            try:
                other = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                try:   # the SDK starts the server as a session (and group) leader: take its whole tree
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                break


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

            from vigil.sources.safety import async_http_client
            headers = {"Authorization": f"Bearer {ep.token}"} if ep.token else {}
            seen = self.http_errors

            async def note(response: Any) -> None:
                if response.status_code >= 400 and response.request.method == "POST":
                    seen.append(response.status_code)
            self._http = async_http_client(allow_link_local=ep.allow_link_local, verify=ep.verify_tls,
                                           headers=headers, timeout=httpx2.Timeout(self.timeout_s),
                                           event_hooks={"response": [note]})
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


def _tail(errlog: Any, limit: int = 200, secrets: tuple[str, ...] = ()) -> str:
    """The last non-empty line a stdio server wrote to stderr (often the real reason it died), from at
    most ``STDERR_TAIL_BYTES`` of its end, with ``secrets`` masked, cut to ``limit`` characters."""
    if errlog is None:
        return ""
    try:
        fd = errlog.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - STDERR_TAIL_BYTES)
        text = os.pread(fd, size - start, start).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""
    if start:                          # began mid-line: drop the fragment (it may hold half a secret)
        text = text.partition("\n")[2]
    lines = [ln.strip() for ln in _mask(text, secrets).splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    for v in sorted({x for s in secrets for x in (s, s.strip())}, key=len, reverse=True):
        if len(v) >= 4:
            text = text.replace(v, MASK)
    return text


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
