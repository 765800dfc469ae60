"""One outbound HTTP call of an action or a notifier: the connection's address vetted when it is made
(``sources.safety``), a timeout, and every failure one line that never carries the receiver's body
beyond a short excerpt, nor a credential."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from vigil.sources.httpjson import one_line
from vigil.sources.safety import http_client

MAX_ANSWER_BYTES = 1 << 20


class HttpFailure(Exception):
    """``retry``: whether trying again later may help (timeouts, 5xx, 429)."""

    def __init__(self, message: str, retry: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retry, self.status = retry, status


def request(method: str, url: str, *, what: str, timeout_s: float, allow_link_local: bool = False,
            headers: dict[str, str] | None = None, json_body: Any = None, content: bytes | None = None,
            auth: Any = None) -> Any:
    """The answer's JSON (or ``{}`` when it has none)."""
    host = urlsplit(url).netloc
    try:
        with http_client(allow_link_local=allow_link_local, timeout=timeout_s, follow_redirects=False) as c:
            with c.stream(method, url, headers=headers, json=json_body, content=content, auth=auth) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise HttpFailure(f"{what} at {host} answered more than {MAX_ANSWER_BYTES} bytes", False)
    except HttpFailure:
        raise
    except httpx.TimeoutException:
        raise HttpFailure(f"{what} at {host} did not answer within {timeout_s:g} s", True) from None
    except httpx.HTTPError as exc:
        raise HttpFailure(f"cannot reach {what} at {host}: {one_line(type(exc).__name__ + ' ' + str(exc), 160)}",
                          True) from None
    if resp.status_code >= 400:
        retry = resp.status_code >= 500 or resp.status_code == 429
        raise HttpFailure(f"{what} at {host} answered HTTP {resp.status_code}: "
                          f"{one_line(body.decode('utf-8', 'replace'), 120) or resp.reason_phrase}", retry,
                          resp.status_code)
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {"text": one_line(body.decode("utf-8", "replace"), 200)}
