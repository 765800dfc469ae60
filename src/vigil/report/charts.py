"""Inline SVG charts shared by the self-contained HTML report and the operator console.

Plain strings, no scripts and nothing fetched: the same markup works in a report opened from disk
and in the console served on a machine without internet. Every text that comes from data is escaped.
Classes (``line``, ``base``, ``band``, ``onset``, ``anom``, ``change``) are styled by the page's CSS."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime


def hms(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


class Axis:
    """A time axis mapped onto an SVG's width, so several charts (and the change timeline) line up."""

    def __init__(self, t0: float, t1: float, width: int = 520, pad: int = 28) -> None:
        self.t0, self.t1 = float(t0), float(t1) if t1 > t0 else float(t0) + 1.0
        self.width, self.pad = width, pad

    def x(self, t: float) -> float:
        return self.pad + (t - self.t0) / (self.t1 - self.t0) * (self.width - 2 * self.pad)

    def inside(self, t: float) -> bool:
        return self.t0 <= t <= self.t1


def metric_chart(detail: dict, width: int = 520, height: int = 140, axis: Axis | None = None,
                 changes: Sequence[tuple[float, str]] = ()) -> str:
    """A metric series around the onset: the anomalous segment shaded, the baseline median dashed (and,
    when the detail has ``baseline_scale``, its ±1 scale band), the onset and change events as
    vertical lines. ``detail`` is a metric evidence's detail (``series`` as [[ts, value], ...]).
    Returns "" when there is nothing to draw."""
    series = [(float(p[0]), float(p[1])) for p in detail.get("series") or []
              if p[0] is not None and p[1] is not None and math.isfinite(float(p[1]))]
    if len(series) < 2:
        return ""
    xs = [p[0] for p in series]
    ys = [p[1] for p in series]
    if axis is None:
        axis = Axis(min(xs), max(xs), width)
    else:
        width = axis.width
        series = [p for p in series if axis.inside(p[0])]
        if len(series) < 2:
            return ""
        ys = [p[1] for p in series]
    x0, x1 = axis.t0, axis.t1
    med = detail.get("baseline_median")
    scale = detail.get("baseline_scale")
    refs = [med] if med is not None else []
    band = None
    if med is not None and scale:
        band = (med - scale, med + scale)
    lo, hi = min(ys + refs), max(ys + refs)
    if hi == lo:
        hi = lo + 1.0
    pad = axis.pad

    def py(y: float) -> float:
        y = min(max(y, lo), hi)
        return height - pad - (y - lo) / (hi - lo) * (height - 2 * pad)

    pts = " ".join(f"{axis.x(x):.1f},{py(y):.1f}" for x, y in series)
    a = max(detail.get("anomalous_from", x1), x0)
    b = min(detail.get("anomalous_to", x1), x1)
    onset = detail.get("onset")
    label = html.escape(str(detail.get("metric", "metric")))
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'class="chart" aria-label="{label} around the onset">']
    if b > a:
        parts.append(f'<rect x="{axis.x(a):.1f}" y="{pad - 8}" width="{axis.x(b) - axis.x(a):.1f}" '
                     f'height="{height - 2 * pad + 8}" class="anom"><title>anomalous segment</title></rect>')
    if band is not None:
        top, bottom = py(band[1]), py(band[0])
        parts.append(f'<rect x="{pad}" y="{top:.1f}" width="{width - 2 * pad}" height="{max(bottom - top, 0.5):.1f}" '
                     f'class="band"><title>baseline ±1 robust scale</title></rect>')
    if med is not None:
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{py(med):.1f}" y2="{py(med):.1f}" class="base">'
                     f'<title>baseline median {html.escape(f"{med:.4g}")}</title></line>')
    for t, what in changes:
        if axis.inside(t):
            parts.append(f'<line x1="{axis.x(t):.1f}" x2="{axis.x(t):.1f}" y1="{pad - 8}" y2="{height - pad}" '
                         f'class="change"><title>{html.escape(what)}</title></line>')
    if onset is not None and x0 <= onset <= x1:
        parts.append(f'<line x1="{axis.x(onset):.1f}" x2="{axis.x(onset):.1f}" y1="{pad - 8}" y2="{height - pad}" '
                     f'class="onset"><title>onset {hms(onset)}</title></line>')
    parts.append(f'<polyline points="{pts}" class="line"/>')
    parts.append(f'<text x="{pad}" y="{height - 8}">{hms(x0)}</text>'
                 f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{hms(x1)}</text>'
                 f'<text x="{pad}" y="14">{html.escape(f"{hi:.4g}")}</text>'
                 f'<text x="{pad}" y="{height - pad + 12}">{html.escape(f"{lo:.4g}")}</text>')
    parts.append("</svg>")
    return "".join(parts)
