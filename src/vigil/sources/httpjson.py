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
from vigil.sources.safety import ResponseTooLarge, http_client, read_capped, unsafe_reason

STATUS_WORDS = {400: "bad request", 401: "not authorized: check the credentials",
                403: "forbidden: check the credentials", 404: "not found: is this the right URL?",
                405: "method not allowed", 429: "too many requests", 500: "internal error", 502: "bad gateway",
                503: "unavailable", 504: "gateway timeout"}


def one_line(text: str, limit: int = 200) -> str:
    """Untrusted text squeezed onto one short line (for text Vigil itself chose to show, e.g. an Argo CD
    operation message inside a change row; never for a failed call's answer: see ``http_failure``)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def http_failure(what: str, host: str, status: int, path: str) -> str:
    """The one line a failed HTTP call becomes: who answered what status on which path, and what that
    status means. Never the answer's body: a source's URL can point at any service on the Vigil host's
    networks, and its answer must not come back to whoever registered the source."""
    word = STATUS_WORDS.get(status, "")
    return f"{what} at {host} answered HTTP {status} on {path}" + (f" ({word})" if word else "")


def not_an_answer(what: str, host: str, path: str) -> str:
    """A body that is not the vendor API's shape: said without echoing it."""
    return f"{what} at {host} answered {path} with something that is not a {what} API answer"


def version_text(value: Any) -> str:
    """A version string from a backend's build info, shown only if it looks like one (``2.4.1``,
    ``v1.31.0-eks-1``): any other text an answer puts there is not repeated."""
    import re
    text = str(value or "").strip()
    return text if re.fullmatch(r"v?\d{1,4}(\.\d{1,6}){0,3}([-+.~][A-Za-z0-9.]{1,24}){0,3}", text) else "(unknown version)"


def error_code(value: Any, limit: int = 64) -> str | None:
    """A vendor's error code from an answer (``AccessDenied``, ``index_not_found_exception``, ``Forbidden``),
    only if it is one identifier: free text there (a message, a page) is not repeated."""
    import re
    text = str(value or "")
    return text if len(text) <= limit and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]*", text) else None


def transport_failure(what: str, host: str, exc: BaseException) -> str:
    """A failed connection, said by its kind (refused, reset, TLS...), never by the text of an answer."""
    if why := unsafe_reason(exc):
        return f"cannot reach {what} at {host}: {why}"
    return f"cannot reach {what} at {host}: {type(exc).__name__}"


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

    def _get(self, path: str, params: dict[str, Any] | None) -> tuple[bytes, str]:
        """The body (at most ``MAX_RESPONSE_BYTES``, streamed) and its text encoding, of a 2xx answer."""
        try:
            with self._client.stream("GET", path, params=params) as resp:
                if resp.status_code >= 300:
                    raise SourceError(http_failure(self.what, self.host, resp.status_code, path))
                return read_capped(resp), resp.encoding or "utf-8"
        except ResponseTooLarge as exc:
            raise SourceError(f"{self.what} at {self.host} answered more than {exc.limit} bytes on {path}") from None
        except httpx.TimeoutException:
            raise SourceError(f"{self.what} at {self.host} did not answer {path} within {self.timeout_s:g} s") \
                from None
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, ResponseTooLarge):
                raise SourceError(f"{self.what} at {self.host} answered more than {exc.__cause__.limit} bytes on "
                                  f"{path}") from None
            raise SourceError(transport_failure(self.what, self.host, exc)) from None

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        body, _ = self._get(path, params)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise SourceError(f"{not_an_answer(self.what, self.host, path)} (not JSON)") from None

    def get_text(self, path: str, params: dict[str, Any] | None = None) -> str:
        body, encoding = self._get(path, params)
        return body.decode(encoding, "replace")

    def close(self) -> None:
        self._client.close()
