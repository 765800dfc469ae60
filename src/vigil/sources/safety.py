"""Outbound-call safety: URLs a user registers (sources, MCP servers) must not reach link-local or
cloud metadata addresses (the classic SSRF target for stealing instance credentials) unless the
registration says so explicitly. Loopback and private networks are allowed: that is where a
self-hosted Prometheus lives."""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from vigil.errors import InputError

DENIED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",      # IPv4 link-local, incl. 169.254.169.254 (AWS, GCP, Azure, OpenStack metadata)
    "fe80::/10",           # IPv6 link-local
    "fd00:ec2::/32",       # AWS's IPv6 service addresses: metadata fd00:ec2::254, DNS ::253, time ::123
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",    # Azure's WireServer (VM agent, health probes, DNS)
    "192.0.0.0/24",        # IETF protocol assignments, incl. 192.0.0.192 (Oracle Cloud metadata)
    "0.0.0.0/8",           # "this network": 0.0.0.0 reaches the host's own services
))
DENIED_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.azure.internal"})

# IPv6 forms that carry an IPv4 address: a denied IPv4 address is denied in every one of them
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),       # RFC 6052 well-known NAT64 prefix
          ipaddress.ip_network("64:ff9b:1::/48"))     # RFC 8215 local-use NAT64 prefix (IPv4 in the last 32 bits)
_COMPAT = ipaddress.ip_network("::/96")               # deprecated IPv4-compatible ::a.b.c.d
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated ::ffff:0:a.b.c.d


def _v4_inside(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address embeds: mapped, compatible, translated, NAT64, 6to4, Teredo."""
    out: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if any(ip in net for net in (*_NAT64, _TRANSLATED)) or (ip in _COMPAT and int(ip) > 1):
        out.append(low32)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    return out


def denied_address(addr: str) -> bool:
    """Whether ``addr`` (an IP literal) is link-local, cloud metadata or another denied address, in any
    of its IPv6 spellings (``::ffff:169.254.169.254``, ``64:ff9b::a9fe:a9fe``, ``::a9fe:a9fe``...)."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += _v4_inside(ip)
    return any(c in net for c in candidates for net in DENIED_NETWORKS if c.version == net.version)


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


# -- connect time ------------------------------------------------------------------------------------
# ``check_url`` runs when a source is registered; a name can resolve to something else later (DNS
# rebinding: public at registration, 169.254.169.254 at query time). So every outbound HTTP connection a
# connector makes resolves the name itself, refuses it if any answer is denied, and connects to the
# vetted IP, never to the name (which would be resolved again). TLS SNI, certificate checks and the Host
# header still use the name. Unless the source has ``allow_link_local``, which turns all of it off.
#
# One rule, three plugs: httpx (Prometheus, Loki, Tempo, Jaeger, Argo CD) and httpx2 (MCP over HTTP) get a
# network backend on their connection pool; urllib3 (OpenSearch, Datadog, Kubernetes, and boto3's session
# for CloudWatch) gets a connection class. The same plugs bound every answer (``MAX_RESPONSE_BYTES``).
# With an HTTP(S)_PROXY from the environment, the checked address is the proxy's: the proxy resolves
# and connects to the target itself.


class UnsafeAddressError(ConnectionError):
    """A connection refused because its name resolves to a denied address. The message is one line."""


# -- bounded answers ---------------------------------------------------------------------------------------
# Every answer a connector reads over HTTP stops at ``MAX_RESPONSE_BYTES``: the same plugs that vet the
# address (an httpx/httpx2 transport, a urllib3 connection class) count the bytes as they arrive and give
# up past the limit, so a backend that answers 200 MiB costs at most the limit, never the whole body in
# memory before a size check. (A body whose declared Content-Length is over it is not read at all.)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class ResponseTooLarge(ConnectionError):
    """An answer stopped at the limit. The message is one line."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes (stopped reading it there)")
        self.limit = limit


def _refusal(name: str, addr: str | None) -> UnsafeAddressError:
    if addr is None:
        why = "a cloud metadata host name"
    elif addr == name:
        why = "a link-local or cloud metadata address"
    else:
        why = f"it resolves to {addr}, a link-local or cloud metadata address"
    return UnsafeAddressError(f"refused to connect to {name}: {why} (set allow_link_local to allow it)")


def vetted_addresses(host: str, port: int) -> list[str]:
    """Resolve ``host`` once, for one connection: its addresses in the resolver's order, for the caller to
    connect to. ``UnsafeAddressError`` if the name or any of its addresses is denied (one bad answer is
    enough: a client falls back to the next one); a resolution failure raises ``socket.gaierror``."""
    name = host.strip("[]").lower().rstrip(".")
    if name in DENIED_HOSTS:
        raise _refusal(name, None)
    out: list[str] = []
    for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM):
        addr = str(info[4][0])
        if denied_address(addr):
            raise _refusal(name, addr)
        if addr not in out:
            out.append(addr)
    if not out:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} resolves to no address")
    return out


def unsafe_reason(exc: BaseException | None) -> str | None:
    """The one-line refusal (a denied address, an answer over the limit) inside a client library's wrapped error (``MaxRetryError.reason``, an
    OpenSearch ``ConnectionError.info``, ``__cause__``...), or None when the failure was something else."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 20:
            continue
        seen.add(id(e))
        if isinstance(e, UnsafeAddressError | ResponseTooLarge):
            return str(e)
        todo.extend(x for x in (getattr(e, "reason", None), getattr(e, "info", None), e.__cause__, e.__context__)
                    if isinstance(x, BaseException))
    return None


# -- httpx / httpx2: a network backend for the connection pool ------------------------------------------
def _vet_for(core: Any, host: str, port: int) -> list[str]:
    """``vetted_addresses`` with failures as the ``ConnectError`` of ``core`` (httpcore or httpcore2),
    which the client turns into its own ``ConnectError`` with the same message."""
    try:
        return vetted_addresses(host, port)
    except OSError as exc:           # UnsafeAddressError, gaierror
        raise core.ConnectError(str(exc)) from exc


class VettedBackend:
    """A sync httpcore/httpcore2 ``NetworkBackend``: vets the name, then lets ``inner`` connect to the IP.
    Only ``ConnectError`` moves on to the next address (as ``socket.create_connection`` does)."""

    def __init__(self, core: Any, inner: Any) -> None:
        self.core, self.inner = core, inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        last: Exception | None = None
        for addr in _vet_for(self.core, host, port):
            try:
                return self.inner.connect_tcp(addr, port, timeout=timeout, local_address=local_address,
                                              socket_options=socket_options)
            except self.core.ConnectError as exc:
                last = exc
        raise last  # type: ignore[misc]

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        return self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class AsyncVettedBackend:
    """The async twin of ``VettedBackend`` (resolution runs in a worker thread, as asyncio's does)."""

    def __init__(self, core: Any, inner: Any) -> None:
        self.core, self.inner = core, inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        import anyio.to_thread
        last: Exception | None = None
        addrs = await anyio.to_thread.run_sync(_vet_for, self.core, host, port, abandon_on_cancel=True)
        for addr in addrs:
            try:
                return await self.inner.connect_tcp(addr, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except self.core.ConnectError as exc:
                last = exc
        raise last  # type: ignore[misc]

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        return await self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _vetted_transport(transport: Any, backend: Any) -> Any:
    """``transport`` (an httpx/httpx2 ``HTTPTransport``) with ``backend`` on its connection pool. The
    transports take no backend argument, so it is set on the pool they built; refuse loudly rather than
    run unchecked if a new httpx version moved it."""
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version does not allow the connect-time address check")
    pool._network_backend = backend
    return transport


class _Counter:
    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, 0

    def add(self, n: int) -> None:
        self.seen += n
        if self.seen > self.limit:
            raise ResponseTooLarge(self.limit)


def _declared_too_large(headers: Any, limit: int) -> bool:
    try:
        return int(headers.get("content-length") or 0) > limit
    except ValueError:
        return False


def _capped_transport(hx: Any, inner: Any, limit: int, is_async: bool) -> Any:
    """``inner`` (an httpx/httpx2 transport) whose answers stop at ``limit`` bytes as sent: the stream is
    counted chunk by chunk, and reading past the limit is a ``ReadError`` caused by ``ResponseTooLarge``."""

    def refuse(resp: Any) -> None:
        raise hx.ReadError(str(ResponseTooLarge(limit))) from ResponseTooLarge(limit)

    if is_async:
        class AsyncCapped(hx.AsyncByteStream):
            def __init__(self, stream: Any) -> None:
                self.stream, self.count = stream, _Counter(limit)

            async def __aiter__(self) -> Any:
                async for chunk in self.stream:
                    try:
                        self.count.add(len(chunk))
                    except ResponseTooLarge as exc:
                        raise hx.ReadError(str(exc)) from exc
                    yield chunk

            async def aclose(self) -> None:
                await self.stream.aclose()

        class AsyncTransport(hx.AsyncBaseTransport):
            async def handle_async_request(self, request: Any) -> Any:
                resp = await inner.handle_async_request(request)
                if _declared_too_large(resp.headers, limit):
                    await resp.aclose()
                    refuse(resp)
                resp.stream = AsyncCapped(resp.stream)
                return resp

            async def aclose(self) -> None:
                await inner.aclose()

        return AsyncTransport()

    class Capped(hx.SyncByteStream):
        def __init__(self, stream: Any) -> None:
            self.stream, self.count = stream, _Counter(limit)

        def __iter__(self) -> Any:
            for chunk in self.stream:
                try:
                    self.count.add(len(chunk))
                except ResponseTooLarge as exc:
                    raise hx.ReadError(str(exc)) from exc
                yield chunk

        def close(self) -> None:
            self.stream.close()

    class Transport(hx.BaseTransport):
        def handle_request(self, request: Any) -> Any:
            resp = inner.handle_request(request)
            if _declared_too_large(resp.headers, limit):
                resp.close()
                refuse(resp)
            resp.stream = Capped(resp.stream)
            return resp

        def close(self) -> None:
            inner.close()

    return Transport()


def read_capped(resp: Any, limit: int | None = None) -> bytes:
    """The decoded body of a streamed httpx response, read up to ``limit`` bytes (after decompression, so
    a small gzip bomb stops there too); ``ResponseTooLarge`` past it."""
    limit = MAX_RESPONSE_BYTES if limit is None else limit
    if _declared_too_large(resp.headers, limit):
        raise ResponseTooLarge(limit)
    count, parts = _Counter(limit), []
    for chunk in resp.iter_bytes():
        count.add(len(chunk))
        parts.append(chunk)
    return b"".join(parts)


def _client(hx: Any, core: Any, client_cls: Any, transport_cls: Any, backend: Any, allow_link_local: bool,
            verify: Any, kwargs: dict[str, Any]) -> Any:
    from importlib import import_module

    is_async = client_cls.__name__.startswith("Async")

    def transport(**kw: Any) -> Any:
        t = transport_cls(verify=verify, **kw)
        t = t if allow_link_local else _vetted_transport(t, backend)
        return _capped_transport(hx, t, MAX_RESPONSE_BYTES, is_async)     # bounded, vetted or not

    # a client given a transport ignores HTTP(S)_PROXY / NO_PROXY: mount them as httpx itself would
    env = import_module(f"{hx.__name__}._utils").get_environment_proxies()
    mounts = {pattern: None if url is None else transport(proxy=url) for pattern, url in env.items()}
    return client_cls(transport=transport(), mounts=mounts, **kwargs)


def http_client(*, allow_link_local: bool, verify: Any = True, **kwargs: Any) -> Any:
    """The ``httpx.Client`` every httpx-based connector uses: every new connection is vetted, every answer
    stops at ``MAX_RESPONSE_BYTES``."""
    import httpcore
    import httpx
    return _client(httpx, httpcore, httpx.Client, httpx.HTTPTransport,
                   VettedBackend(httpcore, httpcore.SyncBackend()), allow_link_local, verify, kwargs)


def async_http_client(*, allow_link_local: bool, verify: Any = True, **kwargs: Any) -> Any:
    """The same for an ``httpx2.AsyncClient`` (the MCP SDK's HTTP client)."""
    import httpcore2
    import httpx2
    return _client(httpx2, httpcore2, httpx2.AsyncClient, httpx2.AsyncHTTPTransport,
                   AsyncVettedBackend(httpcore2, httpcore2.AnyIOBackend()), allow_link_local, verify, kwargs)


# -- urllib3: a connection class ---------------------------------------------------------------------------
class _CappedReader:
    """The socket file of one ``http.client`` answer, counting what is read from it (headers, chunk framing
    and body: the answer as sent) and raising ``ResponseTooLarge`` past the limit."""

    def __init__(self, fp: Any, limit: int) -> None:
        self._fp, self._count = fp, _Counter(limit)

    def _seen(self, data: bytes) -> bytes:
        self._count.add(len(data))
        return data

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:          # to the end: in steps, so the limit stops it
            parts = []
            while chunk := self._fp.read(65536):
                parts.append(self._seen(chunk))
            return b"".join(parts)
        return self._seen(self._fp.read(n))

    def read1(self, n: int = -1) -> bytes:
        return self._seen(self._fp.read1(n))

    def readline(self, limit: int = -1) -> bytes:
        return self._seen(self._fp.readline(limit))

    def readinto(self, b: Any) -> int:
        n = self._fp.readinto(b)
        self._count.add(n or 0)
        return n

    def peek(self, n: int = 0) -> bytes:
        return self._fp.peek(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _CappedResponse(http.client.HTTPResponse):
    """An ``http.client`` answer (what urllib3 reads from) whose socket file is counted."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = _CappedReader(self.fp, MAX_RESPONSE_BYTES)


class _CappedMixin:
    """For a urllib3 connection class: its answers are read through ``_CappedReader``."""

    response_class = _CappedResponse


class _VettedMixin(_CappedMixin):
    """For a urllib3 connection class: the name is resolved and vetted, and the vetted IP connected to."""

    def _new_conn(self: Any) -> Any:
        from urllib3.exceptions import NewConnectionError

        name = self._dns_host
        try:
            addrs = vetted_addresses(name, self.port)
        except OSError as exc:           # UnsafeAddressError, gaierror
            raise NewConnectionError(self, str(exc)) from exc
        last: Exception | None = None
        for addr in addrs:
            # urllib3 connects to ``_dns_host`` and takes SNI and certificate checks from ``host``
            # later, after this returns with the name put back
            self._dns_host = addr
            try:
                return super()._new_conn()  # type: ignore[misc]
            except NewConnectionError as exc:
                last = exc
            finally:
                self._dns_host = name
        raise last  # type: ignore[misc]


@functools.cache
def _connection_class(base: type, vet: bool) -> type:
    base = getattr(base, "_vigil_base", base)          # already one of ours (a pool made again): start over
    mixin = _VettedMixin if vet else _CappedMixin
    return type(("Vetted" if vet else "Capped") + base.__name__, (mixin, base), {"_vigil_base": base})


@functools.cache
def _pool_class(base: type, vet: bool) -> type:
    base = getattr(base, "_vigil_base", base)
    return type(("Vetted" if vet else "Capped") + base.__name__, (base,),
                {"ConnectionCls": _connection_class(base.ConnectionCls, vet), "_vigil_base": base})


def vet_urllib3(target: Any, *, allow_link_local: bool) -> None:
    """Make a urllib3 ``PoolManager`` (Datadog, Kubernetes clients, botocore's session) or one
    ``HTTP(S)ConnectionPool`` (OpenSearch) vet every new connection (unless ``allow_link_local``) and stop
    every answer at ``MAX_RESPONSE_BYTES``. The classes it had are kept underneath (botocore's own, for
    one). Call it before the first request."""
    vet = not allow_link_local
    if hasattr(target, "pool_classes_by_scheme"):
        target.clear()
        target.pool_classes_by_scheme = {scheme: _pool_class(cls, vet)
                                         for scheme, cls in target.pool_classes_by_scheme.items()}
    else:
        target.ConnectionCls = _connection_class(target.ConnectionCls, vet)


def vet_botocore(client: Any, *, allow_link_local: bool) -> None:
    """The same for a boto3 client's connections (CloudWatch): its session's pool manager. It sits behind
    private attributes, so if a botocore version moved them this refuses loudly rather than run unchecked.
    Proxied connections (HTTPS_PROXY) go through botocore's proxy managers and are not covered."""
    manager = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_manager", None)
    if manager is None or not hasattr(manager, "pool_classes_by_scheme"):
        raise RuntimeError("this botocore version does not allow the connect-time address check")
    vet_urllib3(manager, allow_link_local=allow_link_local)
