"""Plotly building blocks for the backtest report: time lines, fill markers, session shading, bars.

Every function returns plain Plotly objects (``go.Figure``, ``go.Scatter``, shape dicts); the page
that embeds them is :mod:`backtest.report_page`. Times come in as int64 ns UTC and go to Plotly as
float milliseconds since the epoch on ``type="date"`` axes (compact: Plotly writes float arrays as
base64). Long lines are thinned before they are handed to Plotly:

- step lines (sampled states: quotes, positions, exposures, caps) first drop the samples that repeat
  the previous value, which is exact for a line drawn with ``line_shape="hv"``;
- any line still longer than ``max_points`` keeps, per bucket of consecutive samples, the first, the
  minimum and the maximum (:func:`downsample_minmax`), so spikes and gaps survive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

NS_PER_MS = 1_000_000
MAX_LINE_POINTS = 2400

# One colour family per venue: the main colour for the venue's own line, a darker one (drawn dashed)
# for its limit. Families are far apart so venues stay distinct on one chart.
VENUE_FAMILIES = (
    ("#1f77b4", "#08306b"),  # blue
    ("#e6550d", "#7f2704"),  # orange
    ("#31a354", "#00441b"),  # green
    ("#756bb1", "#3f007d"),  # purple
    ("#c51b8a", "#67001f"),  # magenta
    ("#8c6d31", "#4a3a10"),  # brown
)
BUY_COLOR, SELL_COLOR = "#1a9641", "#d7191c"
OURS_COLOR, MARKET_COLOR = "#1f77b4", "#7f7f7f"

# Number formats, one per kind of figure (d3-format for Plotly hovers; the tables use the same rules).
D3_FORMAT = {"money": ",.2f", "price": ",.3f", "qty": ",.4f", "bps": ",.1f", "per_unit": ",.4f", "share": ".1%"}

TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif", size=12, color="#222"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=[f[0] for f in VENUE_FAMILIES],
        xaxis=dict(gridcolor="#e6e6e6", linecolor="#999", showline=True, ticks="outside", zeroline=False),
        yaxis=dict(gridcolor="#e6e6e6", linecolor="#999", showline=True, ticks="outside", zerolinecolor="#999"),
        # a fixed right margin that holds the legend, so every chart's plot area has the same width
        # and the linked time axes line up down the page
        margin=dict(l=80, r=210, t=70, b=50, autoexpand=False),
        hoverlabel=dict(namelength=-1),
        legend=dict(font=dict(size=11), tracegroupgap=0, itemsizing="constant", x=1.01, xanchor="left", y=1, yanchor="top"),
    )
)

_RANGE_BUTTONS = [
    dict(count=1, label="1 h", step="hour", stepmode="backward"),
    dict(count=6, label="6 h", step="hour", stepmode="backward"),
    dict(count=1, label="1 d", step="day", stepmode="backward"),
    dict(step="all", label="all"),
]


def venue_colors(venues: list[str]) -> dict[str, tuple[str, str]]:
    """(main, dark) colour per venue, in the given order."""
    return {v: VENUE_FAMILIES[i % len(VENUE_FAMILIES)] for i, v in enumerate(venues)}


def to_ms(ts_ns: np.ndarray) -> np.ndarray:
    """int64 ns UTC -> float64 ms since the epoch (what a Plotly date axis reads)."""
    return np.asarray(ts_ns, dtype=np.int64).astype(np.float64) / NS_PER_MS


def downsample_minmax(x: np.ndarray, y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> tuple[np.ndarray, np.ndarray]:
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


def drop_repeats(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples where ``y`` changes (NaN counts as a value), plus the last: exact for a step line."""
    if len(y) <= 2:
        return x, y
    same = (y[1:] == y[:-1]) | (np.isnan(y[1:]) & np.isnan(y[:-1]))
    keep = np.r_[True, ~same]
    keep[-1] = True
    return x[keep], y[keep]


def nice_axis(lo: float, hi: float, *, from_zero: bool = False, ticks: int = 6) -> dict:
    """y-axis settings whose range starts and ends on a tick and holds [lo, hi] with a little room.

    Steps are 1, 2, 2.5 or 5 x a power of ten; ``from_zero`` puts 0 in the range (and at its end when
    the data do not cross it). The page's script applies the same rule when a zoom refits an axis.
    """
    if from_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo
    if not span > 0:
        half = abs(hi) * 0.01 or 1.0
        lo, hi, span = (lo, hi + 2 * half, 2 * half) if from_zero and lo == 0 else (lo - half, hi + half, 2 * half)
    pad = span * 0.03
    raw = (span + 2 * pad) / ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    a = 0.0 if from_zero and lo == 0 else math.floor((lo - pad) / step) * step
    b = 0.0 if from_zero and hi == 0 else math.ceil((hi + pad) / step) * step
    return dict(range=[a, b], tickmode="linear", tick0=0.0, dtick=step)


def _y_extent(traces: list) -> tuple[float, float] | None:
    ys = [np.asarray(t.y, dtype=np.float64) for t in traces if t.y is not None]
    ys = [y[np.isfinite(y)] for y in ys]
    ys = [y for y in ys if len(y)]
    return (min(float(y.min()) for y in ys), max(float(y.max()) for y in ys)) if ys else None


def time_line(
    name: str,
    ts_ns: np.ndarray,
    y: np.ndarray,
    color: str,
    *,
    kind: str,
    step: bool = False,
    dash: str | None = None,
    width: float = 1.4,
    max_points: int = MAX_LINE_POINTS,
    **trace: object,
) -> go.Scatter | None:
    """A thinned line against time (None when it has no finite value); ``kind`` picks the hover format."""
    y = np.asarray(y, dtype=np.float64)
    if not np.isfinite(y).any():
        return None
    x = to_ms(ts_ns)
    if step:
        x, y = drop_repeats(x, y)
    x, y = downsample_minmax(x, y, max_points)
    return go.Scatter(
        x=x,
        y=y,
        name=name,
        mode="lines",
        line=dict(color=color, width=width, dash=dash, shape="hv" if step else "linear"),
        hovertemplate=f"%{{y:{D3_FORMAT[kind]}}}",
        **trace,
    )


def fill_markers(
    name: str,
    ts_ns: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    fee: np.ndarray,
    *,
    side: int,
    liquidity: str,
    tag: str,
    venue: str,
) -> go.Scatter:
    """One marker per fill: triangles up for buys, down for sells; taker fills hollow. Hover: price, qty, fee."""
    symbol = "triangle-up" if side > 0 else "triangle-down"
    color = BUY_COLOR if side > 0 else SELL_COLOR
    return go.Scatter(
        x=to_ms(ts_ns),
        y=np.asarray(price, dtype=np.float64),
        # float32 is plenty for a hover label and halves what the fills weigh in the page
        customdata=np.column_stack([qty, fee]).astype(np.float32),
        name=name,
        mode="markers",
        marker=dict(
            symbol=symbol if liquidity == "maker" else f"{symbol}-open",
            color=color,
            size=6,
            line=dict(width=1, color=color),
        ),
        hovertemplate=(
            f"{'buy' if side > 0 else 'sell'} at %{{y:{D3_FORMAT['price']}}} quote ccy"
            f"<br>qty %{{customdata[0]:{D3_FORMAT['qty']}}} tokens/shares"
            f"<br>fee %{{customdata[1]:{D3_FORMAT['money']}}} quote ccy"
            f"<br>{liquidity}, {tag}<extra>{venue} fill</extra>"
        ),
    )


@dataclass(frozen=True)
class SessionRun:
    """A run of equal session state in the samples, from ``start`` until the next run starts (ns)."""

    start: int
    end: int
    state: int


def session_shapes(runs: list[SessionRun], names: tuple[str, ...], shades: dict[int, str]) -> list[dict]:
    """Background rectangles, one per run, with one legend entry per session name (click to hide)."""
    shown: set[int] = set()
    shapes = []
    for run in runs:
        name = names[run.state] if 0 <= run.state < len(names) else str(run.state)
        shapes.append(
            dict(
                type="rect",
                xref="x",
                yref="paper",
                x0=run.start / NS_PER_MS,
                x1=run.end / NS_PER_MS,
                y0=0,
                y1=1,
                fillcolor=shades.get(run.state, "#ffffff"),
                line=dict(width=0),
                layer="below",
                name=f"session: {name}",
                legendgroup=f"session-{name}",
                showlegend=run.state not in shown,
            )
        )
        shown.add(run.state)
    return shapes


@dataclass
class Panel:
    """One row of a time figure: its traces, y-axis title, and whether the y axis starts at 0."""

    title: str
    y_title: str
    traces: list
    y_from_zero: bool = False


def time_figure(
    title: str,
    panels: list[Panel],
    *,
    shapes: list[dict] = (),
    height: int = 330,
    slider: bool = False,
    hovermode: str = "x unified",
    span_ns: tuple[int, int] | None = None,
) -> go.Figure | None:
    """Panels stacked on one shared UTC time axis, with zoom/pan, range buttons (1 h, 6 h, 1 d, all)
    above the top panel, an optional range slider under the bottom one, and hover.

    ``span_ns`` fixes the initial time range (the run's first to last sample, so every chart starts
    on the same window, without the padding markers would add). Panels without data are left out;
    None when none has data (the report then says so).
    """
    panels = [Panel(p.title, p.y_title, [t for t in p.traces if t is not None], p.y_from_zero) for p in panels]
    panels = [p for p in panels if p.traces]
    if not panels:
        return None
    n = len(panels)
    fig = make_subplots(
        rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.22 / n if n > 1 else 0,
        subplot_titles=[p.title for p in panels] if n > 1 else None,
    )
    for row, panel in enumerate(panels, start=1):
        for trace in panel.traces:
            fig.add_trace(trace, row=row, col=1)
        extent = _y_extent(panel.traces)
        axis = nice_axis(*extent, from_zero=panel.y_from_zero) if extent else {}
        fig.update_yaxes(title_text=panel.y_title, rangemode="tozero" if panel.y_from_zero else "normal",
                         **axis, row=row, col=1)
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title, x=0, xanchor="left"),
        height=height,
        hovermode=hovermode,
        showlegend=True,
        shapes=list(shapes),
        dragmode="zoom",
    )
    fig.update_xaxes(type="date", hoverformat="%Y-%m-%d %H:%M:%S.%L")
    if span_ns is not None and span_ns[1] > span_ns[0]:
        fig.update_xaxes(range=[span_ns[0] / NS_PER_MS, span_ns[1] / NS_PER_MS])
    fig.update_xaxes(rangeselector=dict(buttons=_RANGE_BUTTONS, x=0, y=1.0, yanchor="bottom"), row=1, col=1)
    fig.update_xaxes(title_text="time (UTC)", rangeslider=dict(visible=slider, thickness=0.1), row=n, col=1)
    if slider:  # the slider sits under the axis, in the bottom margin (which does not grow by itself)
        fig.update_layout(margin_b=TEMPLATE.layout.margin.b + 0.14 * height)
    return fig


def bar_figure(
    title: str,
    y_title: str,
    categories: list[str],
    series: list[tuple[str, list[float | None], str]],
    *,
    kind: str,
    x_title: str,
    height: int = 320,
) -> go.Figure | None:
    """Grouped bars: one group per category, one bar per (name, values, colour); None = no bar."""
    bars = []
    for name, values, color in series:
        vals = np.array([np.nan if v is None else float(v) for v in values])
        if np.isfinite(vals).any():
            bars.append(
                go.Bar(x=categories, y=vals, name=name, marker_color=color,
                       hovertemplate=f"%{{x}}: %{{y:{D3_FORMAT[kind]}}}<extra>{name}</extra>")
            )
    if not categories or not bars:
        return None
    fig = go.Figure(data=bars)
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0, xanchor="left"), height=height,
                      barmode="group", showlegend=True, hovermode="closest")
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, zeroline=True, **nice_axis(*_y_extent(bars), from_zero=True))
    return fig
