"""Outbound-call safety: URLs a user registers (sources, MCP servers) must not reach link-local or
cloud metadata addresses (the classic SSRF target for stealing instance credentials) unless the
registration says so explicitly. Loopback and private networks are allowed: that is where a
self-hosted Prometheus lives."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from vigil.errors import InputError

DENIED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",      # IPv4 link-local, incl. 169.254.169.254 (AWS, GCP, Azure, OpenStack metadata)
    "fe80::/10",           # IPv6 link-local
    "fd00:ec2::254/128",   # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/32",
))
DENIED_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.azure.internal"})


def denied_address(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in DENIED_NETWORKS)


def check_url(url: str, *, allow_link_local: bool = False, resolve: bool = True) -> None:
    """Raise ``InputError`` (one line) if ``url`` points at a denied address. Host names are resolved
    and every address they resolve to is checked; a name that does not resolve is left to the call
    itself to fail (the backend may be down at registration time)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InputError(f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise InputError(f"the URL {url!r} has no host")
    if allow_link_local:
        return
    if host in DENIED_HOSTS or denied_address(host):
        raise InputError(f"the URL host {host} is a link-local or cloud metadata address; "
                         "set allow_link_local to use it")
    if resolve:
        try:
            infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                       proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return
        for info in infos:
            if denied_address(str(info[4][0])):
                raise InputError(f"the URL host {host} resolves to the link-local or metadata address "
                                 f"{info[4][0]}; set allow_link_local to use it")
