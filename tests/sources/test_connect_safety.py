"""The link-local / cloud metadata deny list holds when a connection is made, not only when a source is
registered: a name that resolved to a public address at registration and to 169.254.169.254 at query
time (DNS rebinding) is refused, for every HTTP connector (httpx, httpx2 and urllib3 based). A name
resolving to an allowed address is connected to by its vetted IP, with the Host header, TLS SNI and the
certificate check still on the name; ``allow_link_local`` turns the check off."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sources.vendor_standins import StandIn
from vigil.errors import InputError
from vigil.sources import safety
from vigil.sources.connector import SourceError, build, validate_config
from vigil.sources.safety import UnsafeAddressError, http_client, vet_urllib3, vetted_addresses

PUBLIC = "203.0.113.7"          # TEST-NET-3: not denied, never connected to here
METADATA = "169.254.169.254"
REAL_GETADDRINFO = socket.getaddrinfo


class FakeDNS:
    """``socket.getaddrinfo`` with some names answered from ``self.names`` (name -> addresses, changed by
    a test between registration and use); every other host goes to the real resolver."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.asked: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        key = host.decode() if isinstance(host, bytes) else host
        if key not in self.names:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        self.asked.append(key)
        out = []
        for addr in self.names[key]:
            ip = ipaddress.ip_address(addr)
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sockaddr = (addr, int(port or 0), 0, 0) if ip.version == 6 else (addr, int(port or 0))
            out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out


@pytest.fixture
def dns(monkeypatch) -> FakeDNS:
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def backend():
    with StandIn(routes={}) as s:
        yield s


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("DD_TEST_API", "a")
    monkeypatch.setenv("DD_TEST_APP", "b")


KINDS = ["prometheus", "loki", "tempo", "jaeger", "argocd", "opensearch", "datadog", "kubernetes", "mcp"]


def config(kind: str, base: str, **extra) -> dict:
    """A minimal source row of ``kind`` whose backend is at ``base`` (scheme://host:port)."""
    if kind == "datadog":
        cfg = {"url": base, "api_key": {"env": "DD_TEST_API"}, "app_key": {"env": "DD_TEST_APP"}}
    elif kind == "kubernetes":
        cfg = {"api_url": base}
    elif kind == "mcp":
        cfg = {"transport": "http", "url": base + "/mcp"}
    else:
        cfg = {"url": base}
    return {**cfg, "timeout_s": 3, **extra}


def attempt(conn) -> str:
    """Call the connector's check; its one-line error, or "" when it answered."""
    try:
        conn.check()
        return ""
    except SourceError as exc:
        return str(exc)
    finally:
        conn.close()


def port_of(s: StandIn) -> int:
    return int(s.url.rsplit(":", 1)[1])


# -- (1) DNS rebinding is refused at connect time ------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_name_rebound_to_metadata_after_registration_is_refused(kind, dns, backend, keys):
    dns.names["rebind.test"] = [PUBLIC]
    conn = build("s", kind, config(kind, f"http://rebind.test:{port_of(backend)}"))   # registration: passes
    assert dns.asked == ["rebind.test"]
    dns.names["rebind.test"] = [METADATA]                                             # ... the name moves
    msg = attempt(conn)
    assert "refused to connect to rebind.test: it resolves to 169.254.169.254, a link-local or cloud " \
           "metadata address (set allow_link_local to allow it)" in msg, msg
    assert "\n" not in msg and "DD_TEST" not in msg and len(dns.asked) >= 2
    assert backend.requests == []


@pytest.mark.parametrize("kind", ["prometheus", "opensearch", "mcp"])
def test_one_denied_answer_among_several_refuses_the_connection(kind, dns, backend, keys):
    dns.names["multi.test"] = [PUBLIC]
    conn = build("s", kind, config(kind, f"http://multi.test:{port_of(backend)}"))
    dns.names["multi.test"] = ["127.0.0.1", "::ffff:169.254.169.254"]     # the first would have answered
    msg = attempt(conn)
    assert "refused to connect to multi.test: it resolves to ::ffff:169.254.169.254" in msg, msg
    assert backend.requests == []


def test_vetted_addresses_rules(dns):
    dns.names.update({"ok.test": ["10.0.0.5", "10.0.0.5", "fd00::1"], "v6meta.test": ["fd00:ec2::254"],
                      "ali.test": ["100.100.100.200"]})
    assert vetted_addresses("ok.test", 80) == ["10.0.0.5", "fd00::1"]
    assert vetted_addresses("127.0.0.1", 80) == ["127.0.0.1"]
    for host in ("v6meta.test", "ali.test", "169.254.169.254", "[fe80::1]", "metadata.google.internal.",
                 "Metadata"):
        with pytest.raises(UnsafeAddressError, match="refused to connect to .*set allow_link_local"):
            vetted_addresses(host, 80)
    with pytest.raises(socket.gaierror):
        vetted_addresses("does-not-exist.invalid", 80)


@pytest.mark.parametrize("addr", [
    "192.0.0.192",                # Oracle Cloud metadata (IETF protocol assignments, 192.0.0.0/24)
    "192.0.0.1",
    "168.63.129.16",              # Azure WireServer
    "64:ff9b::a9fe:a9fe",         # NAT64 (RFC 6052) of 169.254.169.254
    "64:ff9b::169.254.169.254",
    "64:ff9b:1::a9fe:a9fe",       # local-use NAT64 (RFC 8215)
    "::a9fe:a9fe",                # IPv4-compatible
    "::ffff:0:a9fe:a9fe",         # IPv4-translated
    "::ffff:169.254.169.254",     # IPv4-mapped
    "2002:a9fe:a9fe::1",          # 6to4
    "64:ff9b::c000:c0",           # NAT64 of 192.0.0.192
    "::ffff:168.63.129.16",
    "fd00:ec2::253",              # AWS's IPv6 DNS resolver
    "0.0.0.0", "0.1.2.3",
])
def test_denied_address_classes(addr, dns):
    """Every spelling of a metadata or host-internal address is denied: at registration (the literal and a
    name resolving to it) and at connect time."""
    assert safety.denied_address(addr)
    host = f"[{addr}]" if ":" in addr else addr
    with pytest.raises(InputError, match="link-local or cloud metadata"):
        validate_config("prometheus", {"url": f"http://{host}:9090"})
    dns.names["alias.test"] = [addr]
    with pytest.raises(InputError, match="resolves to the link-local or metadata address"):
        validate_config("prometheus", {"url": "http://alias.test:9090"})
    with pytest.raises(UnsafeAddressError):
        vetted_addresses("alias.test", 80)


@pytest.mark.parametrize("addr", ["127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "::1", "fd00::1",
                                  "64:ff9b::a00:1", "::ffff:10.0.0.1", "192.0.2.1", "203.0.113.7", "100.64.0.1"])
def test_allowed_addresses_stay_allowed(addr):
    """Loopback and private networks (where a self-hosted backend lives) and their IPv6 spellings are allowed."""
    assert not safety.denied_address(addr)


def test_registration_check_is_unchanged(dns):
    dns.names["meta.test"] = [METADATA]
    with pytest.raises(InputError, match="resolves to the link-local or metadata address 169.254.169.254"):
        validate_config("prometheus", {"url": "http://meta.test:9090"})
    assert validate_config("prometheus", {"url": "http://meta.test:9090", "allow_link_local": True})


# -- (2) allowed names still connect: to the vetted IP, with the name in Host (and SNI) ----------------------
@pytest.mark.parametrize("kind", KINDS)
def test_an_allowed_name_is_reached_with_its_host_header(kind, dns, backend, keys):
    dns.names["svc.test"] = ["127.0.0.1"]
    port = port_of(backend)
    attempt(build("s", kind, config(kind, f"http://svc.test:{port}")))   # a 404 stand-in: answered is enough
    assert backend.requests, "the backend was not reached"
    assert {r.headers.get("host") for r in backend.requests} == {f"svc.test:{port}"}
    assert dns.asked and set(dns.asked) == {"svc.test"}


def test_a_dead_first_address_falls_back_to_the_next(dns, backend):
    dns.names["two.test"] = ["127.0.0.2", "127.0.0.1"]      # the stand-in listens on 127.0.0.1 only
    port = port_of(backend)
    with http_client(allow_link_local=False, timeout=3) as c:
        assert c.get(f"http://two.test:{port}/x").status_code == 404
    assert backend.paths() == ["/x"]


def _tls_server(name: str, tmp_path):
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names only ``name`` (no IP), and the CA
    file that trusts it. Records the SNI each handshake asked for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    sni: list[str | None] = []
    hosts: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a):
            return None

        def do_GET(self):  # noqa: N802
            hosts.append(self.headers.get("Host"))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    ctx.sni_callback = lambda _sock, server_name, _ctx: sni.append(server_name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, str(cert_file), sni, hosts


def test_tls_keeps_sni_and_certificate_check_on_the_name(dns, tmp_path):
    import urllib3

    server, ca, sni, hosts = _tls_server("secure.test", tmp_path)
    port = server.server_address[1]
    dns.names["secure.test"] = ["127.0.0.1"]
    try:
        with http_client(allow_link_local=False, verify=ssl.create_default_context(cafile=ca), timeout=3) as c:
            assert c.get(f"https://secure.test:{port}/").json() == {"ok": True}
        pm = urllib3.PoolManager(ca_certs=ca, cert_reqs="CERT_REQUIRED", retries=False)
        vet_urllib3(pm, allow_link_local=False)
        assert pm.request("GET", f"https://secure.test:{port}/", timeout=3).status == 200
        assert sni == ["secure.test", "secure.test"] and hosts == [f"secure.test:{port}"] * 2
        # and the rebound name is refused by both before any handshake
        dns.names["secure.test"] = [METADATA]
        with http_client(allow_link_local=False, verify=ssl.create_default_context(cafile=ca), timeout=3) as c:
            with pytest.raises(Exception, match="resolves to 169.254.169.254"):
                c.get(f"https://secure.test:{port}/")
        pm.clear()
        with pytest.raises(urllib3.exceptions.NewConnectionError, match="resolves to 169.254.169.254"):
            pm.request("GET", f"https://secure.test:{port}/", timeout=3)
        assert len(sni) == 2
    finally:
        server.shutdown()
        server.server_close()


# -- (3) allow_link_local still allows it ---------------------------------------------------------------------
@pytest.fixture
def loopback_denied(monkeypatch):
    """Pretend loopback is a metadata range (nothing link-local can answer in a test), for the calls made
    after the source is registered."""
    def deny() -> None:
        monkeypatch.setattr(safety, "DENIED_NETWORKS",
                            (*safety.DENIED_NETWORKS, ipaddress.ip_network("127.0.0.0/8")))
    return deny


@pytest.mark.parametrize("kind", KINDS)
def test_allow_link_local_opts_out_of_the_connect_time_check(kind, backend, keys, loopback_denied):
    guarded = build("s", kind, config(kind, backend.url))
    opted = build("s", kind, config(kind, backend.url, allow_link_local=True))
    loopback_denied()
    msg = attempt(guarded)
    assert "refused to connect to 127.0.0.1: a link-local or cloud metadata address" in msg, msg
    assert backend.requests == []
    attempt(opted)
    assert backend.requests, "allow_link_local did not let the connection through"


def test_allow_link_local_reaches_a_rebound_name(dns, backend, loopback_denied):
    dns.names["meta.test"] = ["127.0.0.1"]
    loopback_denied()
    with http_client(allow_link_local=True, timeout=3) as c:
        assert c.get(f"http://meta.test:{port_of(backend)}/y").status_code == 404
    with http_client(allow_link_local=False, timeout=3) as c, \
            pytest.raises(Exception, match="refused to connect to meta.test: it resolves to 127.0.0.1"):
        c.get(f"http://meta.test:{port_of(backend)}/y")
    assert backend.paths() == ["/y"]


def test_an_environment_proxy_is_still_used_and_its_address_is_the_one_checked(dns, backend, monkeypatch):
    for var in ("ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://proxy.test:{port_of(backend)}")
    dns.names["proxy.test"] = ["127.0.0.1"]
    with http_client(allow_link_local=False, timeout=3) as c:
        assert c.get("http://far.test:8080/z").status_code == 404
    assert backend.paths() == ["/z"] and backend.requests[0].headers["host"] == "far.test:8080"
    assert dns.asked == ["proxy.test"]          # far.test is the proxy's to resolve
    dns.names["proxy.test"] = [METADATA]
    with http_client(allow_link_local=False, timeout=3) as c, \
            pytest.raises(Exception, match="refused to connect to proxy.test"):
        c.get("http://far.test:8080/z")
