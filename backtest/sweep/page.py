"""The sweep's HTML page: one offline file in the backtest report's style (backtest.report_page).

Sections: what was swept and how; the best parameter sets; the objective against each swept key
(every run as a point, the mean over seeds as a line); a heatmap of the mean objective over two keys
(``[report] heatmap``, else the first two; a scatter coloured by the objective when a key has too many
distinct values for cells); the equity curves (PnL from the window's start) of the best ``[report] top``
sets; with walk-forward, each fold's in-sample and out-of-sample objective side by side and the
winners' equity curves on their fitting and test windows; the failed runs and their errors.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from backtest.charts import TEMPLATE, VENUE_FAMILIES, Panel, bar_figure, nice_axis, time_figure, time_line
from backtest.report import fmt
from backtest.report_page import figure_block, page

MAX_HEATMAP_VALUES = 12
MAX_SET_ROWS = 200
COLORS = [f[0] for f in VENUE_FAMILIES] + ["#17becf", "#bcbd22", "#7f7f7f", "#9467bd"]


def label_of(keys: list[str]) -> dict[str, str]:
    """A short column label per swept key: its last part, or more parts where two keys would clash."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if sum(1 for k in keys if k.split(".")[-n:] == parts[-n:]) == 1:
                break
        out[key] = short
    return out


def value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def choice_label(sweep, key: str, value: Any) -> str | None:
    """'#N' for a table or list value (a column holds its JSON text): its place in the sweep file's
    list of values for ``key``, so a terminal table shows a short cell and a legend the value."""
    if not isinstance(value, str) or value[:1] not in ("[", "{"):
        return None
    r = sweep.spec.ranges.get(key)
    values = sweep.spec.grid.get(key) or (r.choices if r is not None else None) or []
    for i, v in enumerate(values):
        if json.dumps(v, sort_keys=True) == value:
            return f"#{i + 1}"
    return None


def describe_objective(spec) -> str:
    o = spec.objective
    what = {"sharpe": f"Sharpe of {o.window_s:g} s returns (annualised)", "markout": f"fill markout at {o.horizon_s} s",
            "pnl_after_haircut": "PnL after haircut", "pnl": "PnL (raw)",
            "pnl_per_drawdown": "PnL per unit of max drawdown"}.get(o.metric, o.metric)
    return f"{what}, {o.direction}d, mean over the seeds"


def write_page(path: str | Path, result) -> Path:
    """Write the page for a :class:`backtest.sweep.driver.SweepResult`; returns the path."""
    sweep, rows, sets = result.sweep, result.rows, result.sets
    keys = [k for k in sweep.keys if k in rows.columns]
    labels = label_of(keys)
    spec = sweep.spec
    search_sets = result.search_sets()
    body = [
        f"<h1>stockbridge sweep: {escape(sweep.name)}</h1>",
        f'<p class="meta">{escape(_meta(result))}</p>',
        "<h2>Best parameter sets</h2>",
        f'<p class="note">Objective: {escape(describe_objective(spec))}. '
        + ("Walk-forward: ranked by the mean in-sample objective over the fitting windows. " if result.folds else "")
        + "A set is ranked only when every seed ran with a value.</p>",
        _sets_table(result.ranked(), keys, labels, spec.report.top),
    ]
    charts: list[tuple[str, go.Figure | None]] = []
    search_rows = rows.filter(pl.col("window").is_in(result.fit_windows())) if result.folds else rows
    for key in keys:
        charts.append((f"vs-{key}", _vs_param(search_rows, search_sets, key, labels[key], spec)))
    pair = spec.report.heatmap or (keys[:2] if len(keys) >= 2 else None)
    if pair:
        charts.append(("heatmap", _heatmap(search_sets, pair, labels, spec)))
    charts.append(("top-equity", _top_equity(result, result.ranked(), labels)))
    body.append("<h2>Objective against the swept keys</h2>")
    body += [_block(fid, fig) for fid, fig in charts[:len(keys) + (1 if pair else 0)]]
    body.append(f"<h2>Equity of the best {spec.report.top} parameter sets</h2>")
    body.append(_block("top-equity", charts[-1][1]))
    if result.folds:
        body += _walk_forward(result, keys, labels)
    failed = rows.filter(pl.col("status") != "ok")
    if failed.height:
        body.append(f"<h2>Failed runs ({failed.height})</h2>")
        body.append(_failed_table(failed, keys, labels))
    body.append("<h2>Every parameter set</h2>")
    body.append(_all_sets(sets, keys, labels, result.windows))
    out = Path(path)
    out.write_text(page(f"stockbridge sweep: {sweep.name}", body), encoding="utf-8")
    return out


def _block(fid: str, fig: go.Figure | None) -> str:
    if fig is None:
        return f'<p class="note">{escape(fid)}: no data (no run with a value).</p>'
    return figure_block(f"fig-{fid}", fig, time_axis=False)


def _meta(result) -> str:
    sweep, p = result.sweep, result.progress
    wf = f"; walk-forward over {len(result.windows)} windows" if result.windows else ""
    return (f"config {sweep.config_path}; sweep file {sweep.path}; method {sweep.method}; seeds "
            f"{', '.join(map(str, sweep.seeds))}{wf}; {p.unique} runs ({p.executed} run now, {p.unique - p.executed} "
            f"done before, {p.unique_failed} failed) on {result.executor} in {result.seconds:,.1f} s")


def _sets_table(sets: pl.DataFrame, keys: list[str], labels: dict[str, str], top: int) -> str:
    if sets.height == 0:
        return '<p class="note">No runs.</p>'
    cols = [("objective", "objective", "ratio"), ("pnl_after_haircut", "PnL after haircut", "money"),
            ("sharpe", "Sharpe (window)", "ratio"), ("max_drawdown", "max drawdown", "money"), ("fills", "fills", "count"),
            ("runs", "runs", "count"), ("failed", "failed", "count")]
    cols = [c for c in cols if c[0] in sets.columns]
    head = "<tr><th>#</th>" + "".join(f"<th>{escape(labels[k])}</th>" for k in keys) + "".join(
        f"<th>{escape(label)}</th>" for _, label, _ in cols) + "</tr>"
    body = []
    for i, r in enumerate(sets.head(top).iter_rows(named=True), 1):
        cells = "".join(f"<td>{escape(value_text(r[k]))}</td>" for k in keys)
        cells += "".join(f"<td>{escape(fmt(_f(r.get(c), kind), kind))}</td>" for c, _, kind in cols)
        body.append(f"<tr><td>{i}</td>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _f(v, kind: str):
    """A table cell's value: counts (means over seeds) rounded to whole numbers, non-finite as missing."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if kind == "count" and isinstance(v, float):
        return int(round(v))
    return v


def _axis_values(col: pl.Series) -> tuple[list, bool]:
    """(values for the x axis, numeric?)."""
    if col.dtype.is_numeric():
        return col.to_list(), True
    return [str(v) for v in col.to_list()], False


def _vs_param(rows: pl.DataFrame, sets: pl.DataFrame, key: str, label: str, spec) -> go.Figure | None:
    ok = rows.filter(pl.col("objective").is_not_null())
    if ok.height == 0:
        return None
    x, numeric = _axis_values(ok[key])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=ok["objective"].to_numpy(), mode="markers", name="a run",
                             marker=dict(color="#1f77b4", size=7, opacity=0.55),
                             text=[f"seed {s}" for s in ok["seed"].to_list()],
                             hovertemplate=f"{escape(label)} = %{{x}}<br>objective %{{y:,.4g}}<br>%{{text}}<extra></extra>"))
    means = (sets.filter(pl.col("objective").is_not_null()).group_by(key).agg(pl.col("objective").mean()).sort(key)
             if sets.height else pl.DataFrame())
    if means.height:
        mx, _ = _axis_values(means[key])
        fig.add_trace(go.Scatter(x=mx, y=means["objective"].to_numpy(), mode="lines+markers" if numeric else "markers",
                                 name="mean", line=dict(color="#d62728", width=2),
                                 marker=dict(size=9, symbol="diamond"),
                                 hovertemplate=f"{escape(label)} = %{{x}}<br>mean %{{y:,.4g}}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=dict(text=f"Objective against {key}", x=0, xanchor="left"), height=340,
                      hovermode="closest")
    fig.update_xaxes(title_text=key, type=("log" if numeric and _log_axis(spec, key, x) else None))
    y = ok["objective"].to_numpy()
    fig.update_yaxes(title_text="objective", **nice_axis(float(np.min(y)), float(np.max(y))))
    return fig


def _log_axis(spec, key: str, x: list) -> bool:
    r = spec.ranges.get(key)
    if r is not None:
        return bool(r.log)
    vals = [v for v in x if isinstance(v, (int, float))]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 50


def _heatmap(sets: pl.DataFrame, pair: list[str], labels: dict[str, str], spec) -> go.Figure | None:
    a, b = pair
    ok = sets.filter(pl.col("objective").is_not_null()) if sets.height else sets
    if ok.height == 0 or a not in ok.columns or b not in ok.columns:
        return None
    cells = ok.group_by(a, b).agg(pl.col("objective").mean())
    xa, ya = sorted(set(cells[a].to_list()), key=_sort_key), sorted(set(cells[b].to_list()), key=_sort_key)
    title = f"Mean objective over {a} and {b}"
    if len(xa) > MAX_HEATMAP_VALUES or len(ya) > MAX_HEATMAP_VALUES:  # a search's continuous values: points
        fig = go.Figure(go.Scatter(
            x=cells[a].to_list(), y=cells[b].to_list(), mode="markers",
            marker=dict(size=11, color=cells["objective"].to_numpy(), colorscale="Viridis", showscale=True,
                        colorbar=dict(title="objective")),
            hovertemplate=f"{escape(labels[a])} %{{x}}<br>{escape(labels[b])} %{{y}}<br>objective %{{marker.color:,.4g}}<extra></extra>"))
    else:
        z = np.full((len(ya), len(xa)), np.nan)
        for r in cells.iter_rows(named=True):
            z[ya.index(r[b]), xa.index(r[a])] = r["objective"]
        fig = go.Figure(go.Heatmap(
            x=[value_text(v) for v in xa], y=[value_text(v) for v in ya], z=z, colorscale="Viridis",
            colorbar=dict(title="objective"), texttemplate=f"%{{z:{_cell_format(z)}}}", xgap=2, ygap=2,
            hovertemplate=f"{escape(labels[a])} %{{x}}<br>{escape(labels[b])} %{{y}}<br>objective %{{z:,.4g}}<extra></extra>"))
        fig.update_xaxes(type="category")
        fig.update_yaxes(type="category")
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0, xanchor="left"), height=420, hovermode="closest")
    fig.update_xaxes(title_text=a)
    fig.update_yaxes(title_text=b)
    return fig


def _cell_format(z: np.ndarray) -> str:
    """d3 format for heatmap cells: whole numbers for large values, else enough decimals."""
    finite = np.abs(z[np.isfinite(z)])
    top = float(finite.max()) if finite.size else 0.0
    return ",.0f" if top >= 100 else ",.2f" if top >= 1 else ",.4f"


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def _pnl_curve(result, run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    curve = result.store.curve(run_id)
    if curve is None or curve.height == 0:
        return None
    ts, eq = curve["ts"].to_numpy(), curve["equity_raw"].to_numpy()
    return ts, eq - eq[0]


def _set_label(row: dict[str, Any], keys: list[str], labels: dict[str, str]) -> str:
    return ", ".join(f"{labels[k]}={value_text(row[k])}" for k in keys)


def _top_equity(result, ranked: pl.DataFrame, labels: dict[str, str]) -> go.Figure | None:
    """PnL (raw equity less its first sample) of each of the best sets' first seed, on each window it ran."""
    keys = list(labels)
    top = ranked.filter(pl.col("objective").is_not_null()).head(result.sweep.spec.report.top)
    traces = []
    for i, r in enumerate(top.iter_rows(named=True)):
        runs = result.rows.filter((pl.col("params") == r["params"]) & (pl.col("status") == "ok"))
        if result.folds:  # the fitting windows' runs (a fold's test is in the walk-forward section)
            runs = runs.filter(pl.col("run_id").is_in(list(result.search_ids)))
        first_seed = runs["seed"].min()
        for j, run in enumerate(runs.filter(pl.col("seed") == first_seed).sort("window", nulls_last=False).iter_rows(named=True)):
            c = _pnl_curve(result, run["run_id"])
            if c is None:
                continue
            traces.append(time_line(f"#{i + 1} {_set_label(r, keys, labels)} (seed {first_seed})", c[0], c[1],
                                    COLORS[i % len(COLORS)], kind="money", legendgroup=str(i), showlegend=j == 0))
    if not traces:
        return None
    return time_figure("PnL from each window's start, raw equity (quote ccy)", [Panel("", "quote ccy", traces)], height=440)


def _walk_forward(result, keys: list[str], labels: dict[str, str]) -> list[str]:
    folds = result.folds
    out = ["<h2>Walk-forward: in-sample and out-of-sample</h2>",
           '<p class="note">Fold i chooses the best parameter set on window i (in-sample) and runs it on window i + 1 '
           "(out-of-sample). Objective: mean over the seeds.</p>"]
    head = ("<tr><th>fold</th><th>fit window (UTC)</th><th>test window (UTC)</th>"
            + "".join(f"<th>{escape(labels[k])}</th>" for k in keys) + "<th>in-sample</th><th>out-of-sample</th></tr>")
    body = []
    for f in folds:
        point = f["point"] or {}
        cells = "".join(f"<td>{escape(value_text(point[k])) if k in point else '-'}</td>" for k in keys)
        body.append(f"<tr><td>{f['fold']}</td><td>{escape(_span(f['fit']))}</td><td>{escape(_span(f['test']))}</td>{cells}"
                    f"<td>{escape(fmt(f['in_sample'], 'ratio'))}</td><td>{escape(fmt(f['out_of_sample'], 'ratio'))}</td></tr>")
    out.append(f"<table>{head}{''.join(body)}</table>")
    cats = [f"fold {f['fold']}" for f in folds]
    bars = bar_figure("Objective of each fold's winner: in-sample beside out-of-sample", "objective", cats,
                      [("in-sample (fit window)", [f["in_sample"] for f in folds], "#1f77b4"),
                       ("out-of-sample (next window)", [f["out_of_sample"] for f in folds], "#e6550d")],
                      kind="per_unit", x_title="fold")
    out.append(_block("wf-objective", bars))
    traces = []
    for f in folds:
        color = COLORS[f["fold"] % len(COLORS)]
        for role, ids, dash in (("in-sample", f["in_sample_runs"], None), ("out-of-sample", f["out_of_sample_runs"], "dash")):
            if not ids:
                continue
            c = _pnl_curve(result, ids[0])
            if c is not None:
                traces.append(time_line(f"fold {f['fold']} {role}", c[0], c[1], color, kind="money", dash=dash,
                                        legendgroup=f"fold{f['fold']}"))
    fig = time_figure("Each fold's winner: PnL on its fit window (solid) and its test window (dashed), first seed (quote ccy)",
                      [Panel("", "quote ccy", traces)], height=440) if any(t is not None for t in traces) else None
    out.append(_block("wf-equity", fig))
    return out


def _span(window) -> str:
    a, b = window
    return f"{a[:16].replace('T', ' ')} to {b[:16].replace('T', ' ')}"


def _failed_table(failed: pl.DataFrame, keys: list[str], labels: dict[str, str]) -> str:
    head = "<tr><th>seed</th><th>window</th>" + "".join(f"<th>{escape(labels[k])}</th>" for k in keys) + "<th>error</th></tr>"
    body = []
    for r in failed.head(50).iter_rows(named=True):
        cells = "".join(f"<td>{escape(value_text(r.get(k)))}</td>" for k in keys)
        window = "-" if r.get("window") is None else str(r["window"])
        body.append(f"<tr><td>{r['seed']}</td><td>{window}</td>{cells}<td style=\"text-align:left\">{escape(str(r.get('error')))}</td></tr>")
    more = f'<p class="note">{failed.height - 50} more in results.parquet.</p>' if failed.height > 50 else ""
    return f"<table>{head}{''.join(body)}</table>{more}"


def _all_sets(sets: pl.DataFrame, keys: list[str], labels: dict[str, str], windows) -> str:
    if sets.height == 0:
        return '<p class="note">No runs.</p>'
    cols = [c for c in ("objective", "pnl_after_haircut", "sharpe", "pnl_per_drawdown", "max_drawdown", "markout_10s",
                        "fills", "runs", "failed") if c in sets.columns]
    head = ("<tr>" + ("<th>window</th>" if windows else "") + "".join(f"<th>{escape(labels[k])}</th>" for k in keys)
            + "".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>")
    body = []
    for r in sets.head(MAX_SET_ROWS).iter_rows(named=True):
        w = f"<td>{r['window']}</td>" if windows else ""
        cells = "".join(f"<td>{escape(value_text(r[k]))}</td>" for k in keys)
        kinds = {c: "count" if c in ("fills", "runs", "failed") else "ratio" for c in cols}
        cells += "".join(f"<td>{escape(fmt(_f(r.get(c), kinds[c]), kinds[c]))}</td>" for c in cols)
        body.append(f"<tr>{w}{cells}</tr>")
    more = f'<p class="note">{sets.height - MAX_SET_ROWS} more in results.parquet.</p>' if sets.height > MAX_SET_ROWS else ""
    return f"<table>{head}{''.join(body)}</table>{more}"
