"""The fault kind of a candidate, from the strongest evidence it has.

Each finding already says which kind it points at (a CPU rise: cpu; a new exception line in its own
requests: error; a change: change). The kind of a candidate is that of its strongest scored finding,
with these rules where a finding is a symptom other evidence explains:

- a rise in a service's own latency is a symptom every kind of fault can cause: when a statistically
  significant change in the same service's requests (request patterns or log shifts, which pass a
  false-discovery-rate or null-maximum bar) says how the code path changed, that names the kind, unless
  the CPU explains the slowdown;
- a slowdown (own or network latency) while the service's own CPU is up by 2 sigma or more (where the
  local family's 1-3 sigma gate is half open), or its CPU at least doubled within the first minute
  beyond the median workload's (``analyzers/growth.py``: a CPU step late in the first minute, which the
  local family's median misses), is the CPU's symptom;
- a severe slowdown of the service's own time (its unexplained latency up tenfold or more, not the CPU's
  doing) is the fault itself where the rest reads as a logic fault (a new warning line, a wrong value):
  a backend made 100x slower logs warnings and its callers time out, but what to act on is the slowdown.
  A new exception keeps its reading (on Online Boutique an exception fault slowed the service tenfold);
- a severe slowdown of its own time (tenfold or more, from spans) whose calls after the onset look like
  retransmission waits (under half of them slowed, or the slowed ones spread over tenfold and more) is
  packet loss: retransmission timeouts delay a share of the calls, by backoffs of very different
  lengths; a slow process or a delay slows nearly every call by a like amount. The same reading of a
  network finding's span pairs names loss there. (Worked out on the three Eadro Train-Ticket loss cases;
  few calls per case, so a hypothesis more than a finding.)
- when several of a service's own resources rose, memory outranks disk and disk outranks CPU, provided
  the rise is substantial (half as much again or more, at 3 sigma or more): memory pressure makes a
  process burn CPU (garbage collection, page reclaim) and do I/O (swapping, cache), a busy disk shows as
  CPU (I/O wait), but a CPU hog grows neither memory nor disk traffic. (Worked out on the Bookinfo
  memory-stress cases, where the stressor's CPU rose more, in fold terms, than the memory it held.)
"""

from __future__ import annotations

import math

from vigil.engine.analyzers.logs import log_kind
from vigil.engine.analyzers.patterns import pattern_kind
from vigil.engine.findings import ChangeEvent, ExcessShare, Finding, LogShift, PatternChange, SeriesShift
from vigil.model import FaultKind

CPU_EXPLAINS_Z = 2.0
SUBSTANTIAL_D = math.log(1.5)   # a resource rise counts as substantial from half as much again...
SUBSTANTIAL_Z = 3.0             # ...at 3 sigma or more
SEVERE_SLOWDOWN = math.log(10)  # own latency up tenfold beyond what its calls explain
MEMORY_GROWTH = math.log(3)     # memory up threefold within the fault's first minutes...
CPU_GROWTH = math.log(2)        # CPU at least doubled (held) within the fault's first minute...
GROWTH_Z = 3.0                  # ...each at 3 sigma or more
_GROWTH_OVERRIDES = (FaultKind.CPU, FaultKind.LATENCY, FaultKind.UNKNOWN)
_RESOURCE_ORDER = ("local:memory", "local:disk", "local:cpu")
_LOCAL_WHY = {
    "local:cpu": (FaultKind.CPU, "its own CPU rose sharply"),
    "local:memory": (FaultKind.MEMORY, "its own memory rose sharply"),
    "local:disk": (FaultKind.DISK, "its own disk activity rose sharply"),
    "local:network": (FaultKind.NETWORK_DELAY, "calls to or from it slowed between caller and callee, and not "
                                               "on the other endpoints' edges: the delay is on its network"),
    "local:latency": (FaultKind.LATENCY, "its own (server) latency rose beyond what its calls explain"),
    "local:traffic": (FaultKind.ERROR, "it stopped making calls it used to make while its own traffic held: "
                                       "a code path aborted early"),
    "local:trace-pattern": (FaultKind.ERROR, "inside its spans, a call that always followed another stopped: "
                                             "its code path changed (an exception or early return)"),
    "local:entry": (FaultKind.ERROR, "user-facing success rate fell with nothing downstream to explain it"),
    "local:stopped": (FaultKind.POD_FAILURE, "it stopped reporting while the rest of the system went on: "
                                             "the workload was paused, killed or is restarting"),
    "local:leak": (FaultKind.MEMORY, "its memory climbed steadily after the onset: a leak"),
}


def _cpu_explains(f: Finding, fs: list[Finding]) -> bool:
    return any((g.hypothesis == "local:cpu" and (
        g.score >= 0.5 * f.score or (isinstance(g.detail, SeriesShift) and g.detail.z >= CPU_EXPLAINS_Z)))
        or (g.hypothesis == "growth:cpu" and isinstance(g.detail, SeriesShift) and g.detail.d >= CPU_GROWTH
            and g.detail.z >= GROWTH_Z) for g in fs)


def _substantial(fs: list[Finding], hypothesis: str) -> bool:
    return any(g.hypothesis == hypothesis and isinstance(g.detail, SeriesShift)
               and g.detail.d >= SUBSTANTIAL_D and g.detail.z >= SUBSTANTIAL_Z for g in fs)


def _resource(hypothesis: str, fs: list[Finding]) -> tuple[FaultKind, str]:
    """The resource kind for a saturation finding, letting a substantial rise of a resource that causes
    the others (memory, then disk) take precedence."""
    for other in _RESOURCE_ORDER[: _RESOURCE_ORDER.index(hypothesis)]:
        if _substantial(fs, other):
            kind, why = _LOCAL_WHY[other]
            return kind, why + f" (its {hypothesis.split(':')[1]} rose too, as {other.split(':')[1]} pressure makes it)"
    return _LOCAL_WHY[hypothesis]


def fault_kind(ordered: list[Finding], all_findings: list[Finding]) -> tuple[FaultKind, str]:
    """The kind the strongest scored evidence points at, and why. ``ordered``: the candidate's scored
    findings, strongest first; ``all_findings``: all of its findings."""
    kind, why = _strongest_kind(ordered, all_findings)
    if kind in _GROWTH_OVERRIDES:
        grew = max((f for f in all_findings if f.hypothesis == "growth:memory" and isinstance(f.detail, SeriesShift)
                    and f.detail.d >= MEMORY_GROWTH and f.detail.z >= GROWTH_Z),
                   key=lambda f: f.score, default=None)
        if grew is not None:
            return FaultKind.MEMORY, (f"its memory grew about {math.exp(grew.score):.0f}-fold in the fault's first "
                                      f"minutes ({grew.title}): memory pressure, which also burns CPU and slows "
                                      f"requests" + ("" if kind is FaultKind.UNKNOWN else f"; {why}"))
    if kind is FaultKind.LOGIC:
        severe = next((f for f in all_findings if f.hypothesis == "local:latency" and f.score >= SEVERE_SLOWDOWN
                       and not _cpu_explains(f, all_findings)), None)
        if severe is not None:
            return FaultKind.LATENCY, (f"its own time rose about {math.exp(severe.score):.0f}-fold beyond what its "
                                       f"calls explain ({severe.title}): the slowdown is the fault, and the new "
                                       f"log lines or request steps around it are its consequences")
    return kind, why


def _strongest_kind(ordered: list[Finding], all_findings: list[Finding]) -> tuple[FaultKind, str]:
    if ordered and ordered[0].hypothesis == "local:latency" and not _cpu_explains(ordered[0], all_findings):
        specific = [f for f in ordered[1:] if f.family in ("patterns", "logs")]
        if specific:
            ordered = specific[:1] + ordered
    for f in ordered:
        d = f.detail
        if f.family == "changes" and isinstance(d, ChangeEvent):
            return FaultKind.CHANGE, f"a {d.kind or 'change'} landed shortly before the onset"
        if f.family == "logs" and isinstance(d, LogShift):
            return log_kind(f.hypothesis, d)
        if f.family == "patterns" and isinstance(d, PatternChange):
            return pattern_kind(d, f.title)
        if f.family == "local":
            if f.hypothesis in ("local:latency", "local:network") and _cpu_explains(f, all_findings):
                return _resource("local:cpu", all_findings)
            if f.hypothesis in _RESOURCE_ORDER:
                return _resource(f.hypothesis, all_findings)
            if f.fault_kind is FaultKind.NETWORK_LOSS:
                return FaultKind.NETWORK_LOSS, ("calls to or from it slowed in a long tail (retransmission-like "
                                                "waits on a share of the calls), not on the other endpoints' "
                                                "edges: packets to or from it are being lost")
            if (f.hypothesis == "local:latency" and isinstance(d, SeriesShift) and d.loss_like >= 0.5
                    and d.d >= SEVERE_SLOWDOWN):
                return FaultKind.NETWORK_LOSS, (f"its calls slowed up to {math.exp(d.d):.0f}-fold in the way of "
                                                f"retransmission waits (a share of them, or by times spread over "
                                                f"tenfold and more), not the even slowdown of a slow process: "
                                                f"packets to or from it are being lost")
            return _LOCAL_WHY.get(f.hypothesis, (f.fault_kind or FaultKind.UNKNOWN, f.title))
        if f.family == "excess" and isinstance(d, ExcessShare):
            if d.kind == "errors":
                return FaultKind.ERROR, f"it accounts for {f.score:.0%} of the excess errors on its own"
            return FaultKind.LATENCY, f"it accounts for {f.score:.0%} of the excess latency on its own"
        if f.fault_kind is not None:
            return f.fault_kind, f.title
    return FaultKind.UNKNOWN, "no dominant signal"
