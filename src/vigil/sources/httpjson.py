"""A small JSON-over-HTTP client for the connectors that speak a vendor's REST API directly (Loki, Tempo,
Jaeger). Why not each connector on its own httpx calls: every failure must become the same kind of
one-line ``SourceError`` that names the backend and the path but never a credential, every call has the
connector's timeout, the credential is attached in one place (bearer token, or basic auth when a
user name is configured, as Grafana Cloud wants), and every connection's address is vetted when it is
made (``safety.http_client``)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from vigil.sources.connector import HttpConfig, SourceError
from vigil.sources.safety import http_client

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def one_line(text: str, limit: int = 200) -> str:
    """Untrusted text squeezed onto one short line (error bodies come from the backend)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class JsonHttp:
    """GETs against one base URL. ``what`` names the backend in error messages (e.g. "Loki")."""

    def __init__(self, cfg: HttpConfig, what: str, headers: dict[str, str] | None = None,
                 username: str | None = None) -> None:
        self.what = what
        self.host = urlsplit(cfg.url).netloc
        self.timeout_s = cfg.timeout_s
        auth = None
        hdrs = {"Accept": "application/json", "User-Agent": "vigil"}
        hdrs.update(headers or {})
        if cfg.token is not None:
            secret = cfg.token.value()
            if username:
                auth = httpx.BasicAuth(username, secret)
            else:
                hdrs["Authorization"] = f"Bearer {secret}"
        self._client = http_client(allow_link_local=cfg.allow_link_local, verify=cfg.verify_tls, base_url=cfg.url,
                                   timeout=cfg.timeout_s, headers=hdrs, auth=auth, follow_redirects=False)

    def _get(self, path: str, params: dict[str, Any] | None) -> httpx.Response:
        try:
            resp = self._client.get(path, params=params)
        except httpx.TimeoutException:
            raise SourceError(f"{self.what} at {self.host} did not answer {path} within {self.timeout_s:g} s") \
                from None
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach {self.what} at {self.host}: {one_line(type(exc).__name__ + ' ' + str(exc))}") \
                from None
        if resp.status_code >= 400:
            raise SourceError(f"{self.what} at {self.host} answered HTTP {resp.status_code} on {path}: "
                              f"{one_line(resp.text) or resp.reason_phrase}")
        if len(resp.content) > MAX_RESPONSE_BYTES:
            raise SourceError(f"{self.what} at {self.host} answered more than {MAX_RESPONSE_BYTES} bytes on {path}")
        return resp

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        resp = self._get(path, params)
        try:
            return json.loads(resp.content)
        except (ValueError, RecursionError):
            raise SourceError(f"{self.what} at {self.host} answered {path} with something that is not JSON: "
                              f"{one_line(resp.text, 80)}") from None

    def get_text(self, path: str, params: dict[str, Any] | None = None) -> str:
        return self._get(path, params).text

    def close(self) -> None:
        self._client.close()
