"""A stdio MCP server that hangs, for the MCP client's timeout tests (plain JSON-RPC, no SDK, so it
starts fast). It answers ``initialize`` and ``tools/list`` (one read-only tool, ``hang``), then never
answers a ``tools/call``.

Run: ``python tests/sources/mcp_hang_server.py PIDFILE [--ignore-term] [--silent]``. It writes its pid
to PIDFILE; ``--ignore-term`` ignores SIGTERM (only SIGKILL ends it); ``--silent`` never answers
anything, not even ``initialize``. It writes ``$HANG_SECRET`` (if set) to stderr, as a careless server
might print a credential it was given."""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main() -> None:
    pidfile, flags = sys.argv[1], set(sys.argv[2:])
    if "--ignore-term" in flags:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    if os.environ.get("HANG_SECRET"):
        sys.stderr.write(f"starting with api key {os.environ['HANG_SECRET']}\n")
        sys.stderr.flush()
    for line in sys.stdin:
        if "--silent" in flags:
            continue
        msg = json.loads(line)
        method, mid = msg.get("method"), msg.get("id")
        if method == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "hang", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "hang", "inputSchema": {"type": "object"},
                                 "annotations": {"readOnlyHint": True}}]}
        elif method == "tools/call":
            sys.stderr.write("hanging on tools/call\n")
            sys.stderr.flush()
            while True:             # never answers; ignores stdin closing too
                time.sleep(3600)
        else:
            continue                # notifications
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid, "result": result}) + "\n")
        sys.stdout.flush()
    while True:                     # stdin closed: still does not exit
        time.sleep(3600)


if __name__ == "__main__":
    main()
