"""What a metric measures, from its name: one table every analyzer reads.

``role`` is the fine reading (server vs client latency, load); ``category`` the coarse one people see
(and the direction that is "bad" for it). A series whose name mentions another resource
(``latency-90-from-productpage-v1``, ``..._to_cart``) measures one call edge, not the resource alone:
``peer`` finds that resource."""

from __future__ import annotations

import re
from functools import lru_cache

# (role, pattern): the first match wins
ROLES: list[tuple[str, re.Pattern]] = [
    ("node", re.compile(r"^node|node_|host", re.I)),
    ("restarts", re.compile(r"restart|oom.?kill", re.I)),
    ("cpu", re.compile(r"cpu", re.I)),
    ("mem", re.compile(r"mem|rss|heap", re.I)),
    ("disk", re.compile(r"disk|iops|fs_|filesystem|diskio", re.I)),
    ("srv_lat", re.compile(r"server.*lat|lat.*server", re.I)),
    ("cli_lat", re.compile(r"client.*lat|lat.*client", re.I)),
    ("lat", re.compile(r"latency|duration|response.?time|(?:^|[_-])lat(?:$|[_-])|(?:^|[_/-])p\d\d(?:$|[_-])"
                       r"|_rt$|elapsed", re.I)),
    ("success", re.compile(r"success|availability|apdex", re.I)),
    ("errors", re.compile(r"error|fail|5xx|exception|(?:^|[_-])err(?:$|[_-])", re.I)),
    ("load", re.compile(r"workload|ops|qps|rps|request|throughput", re.I)),
    ("network", re.compile(r"network|net_|net-|receive|transmit|bytes|packet|socket|tcp|retrans|drop", re.I)),
    ("count", re.compile(r"count|calls|sum|(?:^|[_-])lod(?:$|[_-])|load", re.I)),
    ("syscall", re.compile(r"syscall", re.I)),
]

# coarse category people see, and which way is bad: +1 rising, -1 falling, 0 either
_CATEGORY = {"node": ("host", 1), "restarts": ("restarts", 1), "cpu": ("cpu", 1), "mem": ("memory", 1),
             "disk": ("disk", 1), "srv_lat": ("latency", 1), "cli_lat": ("latency", 1), "lat": ("latency", 1),
             "success": ("success", -1), "errors": ("errors", 1), "load": ("traffic", 0),
             "network": ("network", 0), "count": ("traffic", 0), "syscall": ("syscall", 0), "other": ("other", 0)}
LATENCY_ROLES = ("srv_lat", "cli_lat", "lat")
LOAD_ROLES = ("load", "count")


@lru_cache(maxsize=65536)
def role(name: str) -> str:
    for r, p in ROLES:
        if p.search(name):
            return r
    return "other"


def category(name: str) -> tuple[str, int]:
    """(coarse category, bad direction) of a metric name."""
    return _CATEGORY[role(name)]


_PEER = re.compile(r"(?:^|[-_.:/ ])(from|to|src|source|dst|destination|caller|callee)[-_.:=/ ]+(.+)$", re.I)
_CALLER_WORDS = ("from", "src", "source", "caller")


def peer(name: str, known: frozenset[str]) -> tuple[str, str, str] | None:
    """For a series naming another known resource: (peer, "caller"|"callee", the name without it).
    ``latency-90-from-productpage-v1`` on ``details-v1`` measures calls productpage-v1 -> details-v1."""
    m = _PEER.search(name)
    if not m or m.group(2) not in known:
        return None
    return m.group(2), "caller" if m.group(1).lower() in _CALLER_WORDS else "callee", name[: m.start()]
