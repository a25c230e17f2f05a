"""The report's HTML page: offline, self-contained, interactive.

plotly.js is inlined once in the page head (no ``<script src>``, no network). Each figure's JSON sits
in its own ``<script type="application/json" class="sb-figure">`` block next to the ``<div>`` it is
drawn into, so a test (or a person) can read every figure back with :func:`read_figures`. A small
script draws them and links the time axes: zooming, panning or a range button on one time chart
moves all of them, and each chart's y axes then fit the data inside the visible time window.
"""

from __future__ import annotations

import base64
import json
import re
from html import escape, unescape

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 24px auto; color: #222; max-width: 1320px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
p.meta, p.note { color: #555; margin-top: 0; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
div.sb-chart { margin: 6px 0 18px; }
"""

# Draws each figure, then links the x ranges of the charts marked data-time="1" and refits their y axes.
_BOOT_JS = """
(function () {
  var config = {displaylogo: false, responsive: true, scrollZoom: false};
  var timeCharts = [], initial = {};
  document.querySelectorAll('script.sb-figure').forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var div = document.getElementById(node.dataset.target);
    Plotly.newPlot(div, spec.data, spec.layout, config);
    if (div.dataset.time !== '1') return;
    timeCharts.push(div);
    var axes = {};  // the initial ranges and ticks, for a reset
    Object.keys(spec.layout).forEach(function (k) {
      var a = spec.layout[k];
      if (/^[xy]axis\\d*$/.test(k) && a.range) axes[k] = {range: a.range.slice(), dtick: a.dtick};
    });
    initial[div.id] = axes;
  });
  function toMs(v) { return typeof v === 'number' ? v : Date.parse(String(v).replace(' ', 'T') + 'Z'); }
  function niceStep(span, ticks) {  // 1, 2, 2.5 or 5 x a power of ten (charts.nice_axis)
    var raw = span / ticks, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= raw; });
  }
  function niceAxis(lo, hi, zero) {  // the same rule as charts.nice_axis
    if (zero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    var span = hi - lo;
    if (!(span > 0)) { var h = Math.abs(hi) * 0.01 || 1; if (zero && lo === 0) hi += 2 * h; else { lo -= h; hi += h; } span = 2 * h; }
    var pad = span * 0.03, step = niceStep(span + 2 * pad, 6);
    var a = zero && lo === 0 ? 0 : Math.floor((lo - pad) / step) * step;
    var b = zero && hi === 0 ? 0 : Math.ceil((hi + pad) / step) * step;
    return {range: [a, b], dtick: step};
  }
  function axisRanges(ev, letter) {  // {axis name: [lo, hi]} or 'auto' from a relayout event
    var out = {}, auto = false, re = new RegExp('^(' + letter + 'axis\\\\d*)\\\\.(range\\\\[0\\\\]|range|autorange)$');
    Object.keys(ev).forEach(function (k) {
      var m = re.exec(k);
      if (!m) return;
      if (m[2] === 'autorange') auto = true;
      else if (m[2] === 'range') out[m[1]] = [ev[k][0], ev[k][1]];
      else out[m[1]] = [ev[k], ev[m[1] + '.range[1]']];
    });
    return auto ? 'auto' : out;
  }
  function fitY(div, r, skip) {  // each y axis to the data inside the time window [r0, r1]
    var upd = {}, lim = {};
    (div._fullData || div.data).forEach(function (t) {
      if (t.visible === 'legendonly' || !t.x || !t.y) return;
      var ax = 'yaxis' + (t.yaxis && t.yaxis !== 'y' ? t.yaxis.slice(1) : '');
      var l = lim[ax] || (lim[ax] = [Infinity, -Infinity]);
      var line = (t.mode || '').indexOf('lines') >= 0, step = line && t.line && t.line.shape === 'hv';
      var before = -1, after = -1;  // a line also shows the value it enters the window with (and, unless
      for (var i = 0; i < t.x.length; i++) {  // drawn as steps, the one it leaves towards)
        var x = t.x[i], y = t.y[i];
        if (x < r[0]) before = i;
        else if (x > r[1]) { if (after < 0) after = i; }
        else if (y !== null && isFinite(y)) { if (y < l[0]) l[0] = y; if (y > l[1]) l[1] = y; }
      }
      [line ? before : -1, line && !step ? after : -1].forEach(function (i) {
        var y = i >= 0 ? t.y[i] : null;
        if (y !== null && isFinite(y)) { if (y < l[0]) l[0] = y; if (y > l[1]) l[1] = y; }
      });
    });
    Object.keys(lim).forEach(function (ax) {
      var l = lim[ax];
      if (skip[ax] || !(l[0] <= l[1])) return;
      var n = niceAxis(l[0], l[1], (div.layout[ax] || {}).rangemode === 'tozero');
      upd[ax + '.range'] = n.range;
      upd[ax + '.dtick'] = n.dtick;
    });
    return upd;
  }
  function ticksFor(yRanges) {  // tick spacing to suit y ranges the user chose
    var upd = {};
    Object.keys(yRanges).forEach(function (ax) { upd[ax + '.dtick'] = niceStep(Math.abs(yRanges[ax][1] - yRanges[ax][0]), 6); });
    return upd;
  }
  var shared = null;
  function apply(r, src, userY) {
    shared = r;
    timeCharts.forEach(function (div) {
      var upd = {}, init = initial[div.id];
      Object.keys(div.layout).forEach(function (k) {
        if (!/^[xy]axis\\d*$/.test(k)) return;
        if (r === 'auto') {
          if (init[k]) { upd[k + '.range'] = init[k].range.slice(); if (init[k].dtick) upd[k + '.dtick'] = init[k].dtick; }
          else upd[k + '.autorange'] = true;
        } else if (k[0] === 'x') upd[k + '.range'] = r;
      });
      if (r !== 'auto') Object.assign(upd, fitY(div, r, div === src ? userY : {}));
      if (div === src) Object.assign(upd, ticksFor(userY));  // a box zoom keeps its y range
      Plotly.relayout(div, upd);
    });
  }
  timeCharts.forEach(function (div) {
    div.on('plotly_relayout', function (ev) {
      var xr = axisRanges(ev, 'x'), yr = axisRanges(ev, 'y');
      var userY = yr === 'auto' ? {} : yr;
      var keys = xr === 'auto' ? ['auto'] : Object.keys(xr);
      if (!keys.length) {  // a y-only zoom: keep it
        var upd = ticksFor(userY);
        if (Object.keys(upd).length) Plotly.relayout(div, upd);
        return;
      }
      var r = xr === 'auto' ? 'auto' : xr[keys[0]].map(toMs);
      if (r === 'auto' ? shared === 'auto' : (shared && shared !== 'auto' && Math.abs(r[0] - shared[0]) < 1 && Math.abs(r[1] - shared[1]) < 1)) return;
      apply(r, div, userY);
    });
  });
})();
"""


def figure_block(fig_id: str, fig: go.Figure, *, time_axis: bool) -> str:
    """The ``<div>`` a figure is drawn into and its JSON (``</`` escaped so no string can end the script)."""
    spec = fig.to_json().replace("</", "<\\/")
    fig_id = escape(fig_id)  # venue names go into ids
    return (
        f'<div class="sb-chart" id="{fig_id}" data-time="{1 if time_axis else 0}"></div>\n'
        f'<script type="application/json" class="sb-figure" data-target="{fig_id}">{spec}</script>'
    )


def page(title: str, body: list[str]) -> str:
    """The whole document: head with CSS and plotly.js, the body parts, then the drawing script."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        + "\n".join(body)
        + f'\n<script type="text/javascript">{_BOOT_JS}</script>\n</body></html>\n'
    )


_FIGURE_RE = re.compile(
    r'<script type="application/json" class="sb-figure" data-target="([^"]+)">(.*?)</script>', re.S
)


def read_figures(html: str) -> dict[str, dict]:
    """Every figure's spec in the page by its div id, with Plotly's base64 arrays decoded to numpy."""
    return {unescape(fig_id): _decode(json.loads(spec)) for fig_id, spec in _FIGURE_RE.findall(html)}


def _decode(value):
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if "shape" in value:
                shape = value["shape"]
                shape = [int(s) for s in shape.split(",")] if isinstance(shape, str) else list(shape)
                arr = arr.reshape(shape)
            return arr
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
