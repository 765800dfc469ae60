"""Analyst processes: run an investigation's CPU-bound analysis in a child process, so that the
worker pool uses every core (threads of one process share one under the GIL) and a run that
overstays its time budget can be stopped for good.

The child runs ``vigil.agent.Investigator(state, source, preliminary=True, learn_topology=True).run(inv)``. Its ``state``
and ``source`` are proxies: every telemetry query and every state write is a call over the child's
stdin/stdout to the server process, which executes it on the store it owns (DuckDB is
single-process) through the same ``GuardedState`` as the in-thread path (budget, cancellation, live
journal wake-ups). The child holds no database connection, so a child orphaned by a crashed server
can write nothing; it exits when its pipe closes.

Frames are a 4-byte big-endian length and a pickle. Parent -> child: ``("run", inv, source_name)``,
``("reply", value)``, ``("raise", kind, message)``. Child -> parent: ``("call", target, method, args,
kwargs)``, ``("done", error_or_None)``."""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
from typing import Any, BinaryIO

from vigil.errors import InputError, NotFound, VigilError

_HEADER = struct.Struct(">I")
SOURCE_METHODS = frozenset({"metrics", "logs", "spans", "changes", "topology", "baselines", "alerts",
                            "agent_tool_calls", "learn_edges"})
STATE_METHODS = frozenset({"set_status", "append_journal", "replace_hypotheses", "get_investigation",
                           "hypotheses", "journal", "others_waiting"})


class AnalystDied(VigilError):
    pass


def _send(fh: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_HEADER.pack(len(data)) + data)
    fh.flush()


def _recv(fh: BinaryIO) -> Any:
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(head)[0]
    data = fh.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - frames come from our own process pair


# -- the child ------------------------------------------------------------------------------------
def _errors() -> dict[str, type[Exception]]:
    from vigil.server.worker import BudgetExceeded, Cancelled
    return {"BudgetExceeded": BudgetExceeded, "Cancelled": Cancelled, "InputError": InputError,
            "NotFound": NotFound, "VigilError": VigilError}


class _Channel:
    def __init__(self, inp: BinaryIO, out: BinaryIO) -> None:
        self.inp, self.out = inp, out
        self.errors = _errors()

    def call(self, target: str, method: str, args: tuple, kwargs: dict) -> Any:
        _send(self.out, ("call", target, method, args, kwargs))
        msg = _recv(self.inp)
        if msg[0] == "reply":
            return msg[1]
        if msg[0] == "raise":
            raise self.errors.get(msg[1], RuntimeError)(msg[2])
        raise RuntimeError(f"unexpected frame {msg[0]!r}")


class _Proxy:
    def __init__(self, channel: _Channel, target: str, allowed: frozenset[str], name: str = "") -> None:
        self._channel, self._target, self._allowed, self.name = channel, target, allowed, name

    def __getattr__(self, method: str):
        if method not in self._allowed:
            raise AttributeError(method)
        return lambda *args, **kwargs: self._channel.call(self._target, method, args, kwargs)


def child_main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr            # nothing else may write into the frame stream
    from vigil.agent import Investigator
    from vigil.engine import Settings as EngineSettings
    channel = _Channel(inp, out)
    settings = EngineSettings()
    while True:
        try:
            msg = _recv(inp)
        except EOFError:
            return
        if msg[0] != "run":
            continue
        _, inv, source_name = msg
        state = _Proxy(channel, "state", STATE_METHODS)
        source = _Proxy(channel, "source", SOURCE_METHODS, source_name)
        try:
            Investigator(state, source, settings, preliminary=True,  # type: ignore[arg-type]
                         learn_topology=True).run(inv)
            _send(out, ("done", None))
        except (EOFError, BrokenPipeError):
            return
        except Exception as exc:
            _send(out, ("done", (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)))


# -- the parent's side ----------------------------------------------------------------------------
class Analyst:
    """One child process, used by one worker thread at a time."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", "from vigil.server.analyst import child_main; child_main()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            for fh in (self.proc.stdin, self.proc.stdout):
                try:
                    fh.close()
                except OSError:
                    pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.stop()

    def run(self, inv, state, source, deadline: float, cancelled) -> str | None:
        """Run ``inv`` in the child, serving its calls on ``state`` and ``source``. Returns the error
        the run ended with (None when it finished). Past ``deadline`` (monotonic), or a while after
        ``cancelled()`` turns true, the child is killed and AnalystDied raised."""
        if not self.alive():
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        out, inp = self.proc.stdin, self.proc.stdout
        try:
            _send(out, ("run", inv, source.name))
        except (BrokenPipeError, OSError):
            self.kill()
            raise AnalystDied("the analysis process could not be reached") from None
        cancel_seen: float | None = None
        while True:
            ready, _, _ = select.select([inp], [], [], 0.25)
            now = time.monotonic()
            if cancelled() and cancel_seen is None:
                cancel_seen = now
            if not ready:
                if now > deadline:
                    self.kill()
                    raise AnalystDied("the time budget ran out during the analysis; it was stopped")
                if cancel_seen is not None and now - cancel_seen > 2.0:
                    self.kill()
                    raise AnalystDied("cancelled by an operator; the analysis was stopped")
                if not self.alive():
                    raise AnalystDied("the analysis process died")
                continue
            try:
                msg = _recv(inp)
            except EOFError:
                self.kill()
                raise AnalystDied("the analysis process died") from None
            if msg[0] == "done":
                return msg[1]
            _, target, method, args, kwargs = msg
            allowed = SOURCE_METHODS if target == "source" else STATE_METHODS
            obj = source if target == "source" else state
            try:
                if method not in allowed:
                    raise VigilError(f"{target}.{method} is not available to the analysis")
                reply = ("reply", getattr(obj, method)(*args, **kwargs))
            except Exception as exc:
                reply = ("raise", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            try:
                _send(out, reply)
            except (BrokenPipeError, OSError):
                self.kill()
                raise AnalystDied("the analysis process died") from None
