"""Inline SVG charts for the offline HTML report: time lines with shaded bands, grouped bars.

Pure Python and numpy, no plotting library and no scripts: the SVG text goes straight into the page.
Long series are thinned with :func:`downsample_minmax`, which keeps each bucket's minimum and maximum
so spikes survive. Time axes take int64 ns UTC and label in UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 920, 260
_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 70, 16, 44, 44


@dataclass(frozen=True)
class Line:
    """One polyline: ``x`` (int64 ns UTC for time charts), ``y`` (NaN breaks the line)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    color: str
    dashed: bool = False
    dots: bool = False  # markers only, no connecting line


@dataclass(frozen=True)
class Band:
    """A shaded x-range behind the lines (e.g. a session)."""

    x0: int
    x1: int
    color: str


def downsample_minmax(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: per bucket, the first, minimum and maximum in time order.

    NaN gaps stay visible because a bucket with a NaN keeps it. Returns the inputs when short enough.
    """
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 3)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        seg = y[a:b]
        finite = np.isfinite(seg)
        picks = {a}
        if finite.any():
            idx = np.flatnonzero(finite)
            picks.add(a + idx[np.argmin(seg[idx])])
            picks.add(a + idx[np.argmax(seg[idx])])
        if not finite.all():
            picks.add(a + int(np.flatnonzero(~finite)[0]))
        keep.extend(sorted(picks))
    keep = np.asarray(keep, dtype=np.int64)
    return x[keep], y[keep]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 x a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        pad = abs(lo) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def time_chart(
    title: str,
    lines: list[Line],
    *,
    y_label: str = "",
    bands: list[Band] = (),
    legend_extra: list[tuple[str, str]] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """A line chart against UTC time; ``legend_extra`` adds (label, color) swatches, e.g. for bands."""
    xs = [ln.x for ln in lines if len(ln.x)]
    ys = [ln.y[np.isfinite(ln.y)] for ln in lines]
    ys = [y for y in ys if len(y)]
    if not xs or not ys:
        return _empty(title, width)
    x0, x1 = min(int(x.min()) for x in xs), max(int(x.max()) for x in xs)
    lo, hi = min(float(y.min()) for y in ys), max(float(y.max()) for y in ys)
    pad = (hi - lo) * 0.04  # keeps lines off the frame
    lo, hi = lo - pad, hi + pad
    ticks = nice_ticks(lo, hi)
    lo, hi = min([lo, *ticks]), max([hi, *ticks])
    frame = _Frame(width, height, x0, max(x1, x0 + 1), lo, hi if hi > lo else lo + 1.0)
    parts = [_open(width, height, title)]
    for band in bands:
        a, b = frame.px(max(band.x0, x0)), frame.px(min(band.x1, x1))
        if b > a:
            parts.append(f'<rect x="{a:.1f}" y="{frame.top}" width="{b - a:.1f}" height="{frame.plot_h}" fill="{band.color}"/>')
    parts.append(frame.y_axis(ticks, y_label))
    parts.append(frame.time_axis())
    for ln in lines:
        parts.append(frame.polyline(ln))
    parts.append(_legend([(ln.name, ln.color) for ln in lines] + list(legend_extra)))
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    title: str,
    categories: list[str],
    series: list[tuple[str, list[float | None], str]],
    *,
    y_label: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Grouped bars: one group per category, one bar per (name, values, color) series; None = no bar."""
    vals = [v for _, values, _ in series for v in values if v is not None and math.isfinite(v)]
    if not categories or not vals:
        return _empty(title, width)
    ticks = nice_ticks(min(0.0, *vals), max(0.0, *vals))
    lo, hi = min([0.0, *vals, *ticks]), max([0.0, *vals, *ticks])
    frame = _Frame(width, height, 0, len(categories), lo, hi if hi > lo else lo + 1.0)
    parts = [_open(width, height, title), frame.y_axis(ticks, y_label)]
    group_w = frame.plot_w / len(categories)
    bar_w = group_w * 0.8 / len(series)
    zero = frame.py(0.0)
    for i, cat in enumerate(categories):
        gx = frame.left + i * group_w
        parts.append(
            f'<text x="{gx + group_w / 2:.1f}" y="{frame.top + frame.plot_h + 16}" text-anchor="middle" class="tick">{escape(cat)}</text>'
        )
        for j, (name, values, color) in enumerate(series):
            v = values[i]
            if v is None or not math.isfinite(v):
                continue
            y = frame.py(v)
            top, h = min(y, zero), abs(zero - y)
            bx = gx + group_w * 0.1 + j * bar_w
            parts.append(
                f'<rect x="{bx:.1f}" y="{top:.1f}" width="{bar_w * 0.92:.1f}" height="{max(h, 0.5):.1f}" fill="{color}">'
                f"<title>{escape(name)} {escape(cat)}: {v:,.4g}</title></rect>"
            )
    parts.append(f'<line x1="{frame.left}" x2="{frame.left + frame.plot_w}" y1="{zero:.1f}" y2="{zero:.1f}" class="zero"/>')
    if len(series) > 1:
        parts.append(_legend([(name, color) for name, _, color in series]))
    parts.append("</svg>")
    return "\n".join(parts)


class _Frame:
    """Maps data coordinates to pixels inside the plot area."""

    def __init__(self, width: int, height: int, x0: float, x1: float, y0: float, y1: float):
        self.left, self.top = _M_LEFT, _M_TOP
        self.plot_w, self.plot_h = width - _M_LEFT - _M_RIGHT, height - _M_TOP - _M_BOTTOM
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y: float) -> float:
        return self.top + (self.y1 - y) / (self.y1 - self.y0) * self.plot_h

    def y_axis(self, ticks: list[float], label: str) -> str:
        out = [f'<rect x="{self.left}" y="{self.top}" width="{self.plot_w}" height="{self.plot_h}" class="frame"/>']
        for t in ticks:
            y = self.py(t)
            out.append(f'<line x1="{self.left}" x2="{self.left + self.plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            out.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
        if label:
            cy = self.top + self.plot_h / 2
            out.append(f'<text x="14" y="{cy:.1f}" transform="rotate(-90 14 {cy:.1f})" text-anchor="middle" class="tick">{escape(label)}</text>')
        return "\n".join(out)

    def time_axis(self) -> str:
        out = []
        span_s = (self.x1 - self.x0) / 1e9
        fmt = "%H:%M:%S" if span_s < 600 else "%m-%d %H:%M"
        for k in range(6):
            x = self.x0 + (self.x1 - self.x0) * k / 5
            label = datetime.fromtimestamp(x / 1e9, timezone.utc).strftime(fmt)
            anchor = "start" if k == 0 else "end" if k == 5 else "middle"
            out.append(f'<text x="{self.px(x):.1f}" y="{self.top + self.plot_h + 16}" text-anchor="{anchor}" class="tick">{label}</text>')
        out.append(f'<text x="{self.left + self.plot_w}" y="{self.top + self.plot_h + 32}" text-anchor="end" class="tick">UTC</text>')
        return "\n".join(out)

    def polyline(self, ln: Line) -> str:
        x, y = downsample_minmax(ln.x, ln.y)
        px = self.left + (x.astype(np.float64) - self.x0) / (self.x1 - self.x0) * self.plot_w
        py = self.top + (self.y1 - y) / (self.y1 - self.y0) * self.plot_h
        ok = np.isfinite(py)
        if ln.dots:
            return "\n".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{ln.color}"/>' for a, b in zip(px[ok], py[ok]))
        dash = ' stroke-dasharray="5 3"' if ln.dashed else ""
        out = []
        # NaN splits the line so gaps (no quote, venue down) show as gaps
        breaks = np.flatnonzero(~ok)
        for seg in np.split(np.arange(len(px)), breaks):
            seg = seg[ok[seg]]
            if len(seg) == 0:
                continue
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px[seg], py[seg]))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{ln.color}" stroke-width="1.3"{dash}/>')
        return "\n".join(out)


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<text x="{_M_LEFT}" y="18" class="title">{escape(title)}</text>'
    )


def _legend(items: list[tuple[str, str]]) -> str:
    """Swatches in a row under the title, left to right."""
    out, x = [], float(_M_LEFT)
    for name, color in items:
        out.append(f'<rect x="{x:.1f}" y="25" width="10" height="10" fill="{color}" stroke="#999" stroke-width="0.5"/>')
        out.append(f'<text x="{x + 14:.1f}" y="34" class="tick">{escape(name)}</text>')
        x += 24 + 6.5 * len(name)
    return "\n".join(out)


def _empty(title: str, width: int) -> str:
    return (
        f'<svg class="chart" width="{width}" height="60" viewBox="0 0 {width} 60" role="img">'
        f'<text x="{_M_LEFT}" y="18" class="title">{escape(title)}</text>'
        f'<text x="{_M_LEFT}" y="42" class="tick">no data</text></svg>'
    )


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.4g}M"
    if a >= 1e4:
        return f"{v / 1e3:.4g}k"
    return f"{v:.6g}"
