"""What a service tells the process it runs in after a change has committed. The server wires these to
its worker pool, live journal streams and caches; the CLI and ``vigil mcp`` over stdio leave them
doing nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _nothing(*_args: object) -> None:
    return None


@dataclass
class Hooks:
    #: investigations were queued (committed): wake the workers, or publish them to the broker
    enqueued: Callable[[list[str]], None] = _nothing
    #: an investigation's journal, hypotheses or status changed (wakes live journal streams)
    touch: Callable[[str], None] = _nothing
    #: stop a running investigation at its next step; False when no worker of this process holds it
    cancel_running: Callable[[str], bool] = field(default=lambda _inv_id: False)
    #: a space's sources changed (connector caches are dropped)
    sources_changed: Callable[[str], None] = _nothing
    #: a token was revoked (token caches are dropped)
    tokens_changed: Callable[[], None] = _nothing
    #: alerts were accepted (outcomes, alerts, actor): the server summarises them in the journals of the
    #: investigations they joined (``vigil.server.alertnotes``: a storm is a few entries, not one per alert)
    alerted: Callable[[list, list, str], None] = _nothing
    #: something was put in the respond outbox (wakes its dispatcher)
    outbox: Callable[[], None] = _nothing
    #: queued investigations are run by workers (``vigil serve``); without them a start runs nowhere
    queue: bool = False
