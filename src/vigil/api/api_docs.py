"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), only when the operator turns them on
(``VIGIL_API_DOCS=1``): both pages load their scripts and styles from cdn.jsdelivr.net onto the server's
origin, which the console's own policy forbids. Their Content-Security-Policy allows exactly that CDN and
the page's own inline script (by its hash), nothing else; ``/openapi.json`` needs none of this."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

CDN = "https://cdn.jsdelivr.net"


def _csp(page: HTMLResponse) -> str:
    inline = re.findall(rb"<script>(.*?)</script>", page.body, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline)
    return (f"default-src 'none'; script-src {CDN} {hashes}; style-src {CDN} https://fonts.googleapis.com "
            "'unsafe-inline'; font-src https://fonts.gstatic.com; img-src 'self' data: https:; "
            "worker-src blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def mount(app: FastAPI) -> None:
    title = f"{app.title} API"

    def page(resp: HTMLResponse) -> HTMLResponse:
        resp.headers["Content-Security-Policy"] = _csp(resp)
        return resp

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return page(get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=title))

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return page(get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=title))
