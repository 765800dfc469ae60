"""The operator console: server-rendered pages under ``/ui`` on the API's origin (see routes.py).

No third-party front-end assets: the pages are Jinja2 templates, the charts, waterfall and topology
graph are SVG generated on the server, and the only script (static/app.js) is ours. Nothing is
fetched at run time, so the console works on a machine with no internet."""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI

from vigil.web.routes import router, templates


def _dt(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _hm(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%H:%M")


def _hms(value: datetime | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        from vigil.report.charts import hms

        return hms(float(value))
    return value.strftime("%H:%M:%S")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


templates.env.filters.update(dt=_dt, hm=_hm, hms=_hms, pct=_pct)


def mount(app: FastAPI) -> None:
    """Serve the console on ``app`` (under /ui)."""
    app.include_router(router)


__all__ = ["mount", "router"]
