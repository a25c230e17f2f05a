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
from html import escape

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
    if (div.dataset.time === '1') { timeCharts.push(div); initial[div.id] = (spec.layout.xaxis || {}).range; }
  });
  function toMs(v) { return typeof v === 'number' ? v : Date.parse(String(v).replace(' ', 'T') + 'Z'); }
  function xRange(ev) {
    for (var k in ev) {
      var m = /^xaxis\\d*\\.range\\[0\\]$/.exec(k);
      if (m) return [toMs(ev[k]), toMs(ev[k.replace('[0]', '[1]')])];
      if (/^xaxis\\d*\\.range$/.test(k)) return [toMs(ev[k][0]), toMs(ev[k][1])];
      if (/^xaxis\\d*\\.autorange$/.test(k)) return 'auto';
    }
    return null;
  }
  function fitY(div, r) {
    var upd = {}, lim = {};
    (div._fullData || div.data).forEach(function (t) {
      if (t.visible === 'legendonly' || !t.x || !t.y) return;
      var ax = 'yaxis' + (t.yaxis && t.yaxis !== 'y' ? t.yaxis.slice(1) : '');
      var l = lim[ax] || (lim[ax] = [Infinity, -Infinity]);
      for (var i = 0; i < t.x.length; i++) {
        var x = t.x[i], y = t.y[i];
        if (x >= r[0] && x <= r[1] && isFinite(y) && y !== null) { if (y < l[0]) l[0] = y; if (y > l[1]) l[1] = y; }
      }
    });
    Object.keys(lim).forEach(function (ax) {
      var l = lim[ax];
      if (!(l[0] <= l[1])) return;
      var zero = (div.layout[ax] || {}).rangemode === 'tozero';
      if (zero) { l[0] = Math.min(l[0], 0); l[1] = Math.max(l[1], 0); }
      var pad = (l[1] - l[0]) * 0.06 || Math.abs(l[1]) * 0.01 || 1;
      upd[ax + '.range'] = [zero && l[0] === 0 ? 0 : l[0] - pad, zero && l[1] === 0 ? 0 : l[1] + pad];
    });
    return upd;
  }
  var shared = null;
  function apply(r) {
    shared = r;
    timeCharts.forEach(function (div) {
      var upd = {};
      Object.keys(div.layout).forEach(function (k) {
        if (/^xaxis\\d*$/.test(k)) {
          if (r !== 'auto') upd[k + '.range'] = r;
          else if (initial[div.id]) upd[k + '.range'] = initial[div.id].slice();
          else upd[k + '.autorange'] = true;
        }
        if (/^yaxis\\d*$/.test(k) && r === 'auto') upd[k + '.autorange'] = true;
      });
      if (r !== 'auto') Object.assign(upd, fitY(div, r));
      Plotly.relayout(div, upd);
    });
  }
  timeCharts.forEach(function (div) {
    div.on('plotly_relayout', function (ev) {
      var r = xRange(ev);
      if (r === null) return;
      if (r === 'auto' ? shared === 'auto' : (shared && shared !== 'auto' && Math.abs(r[0] - shared[0]) < 1 && Math.abs(r[1] - shared[1]) < 1)) return;
      apply(r);
    });
  });
})();
"""


def figure_block(fig_id: str, fig: go.Figure, *, time_axis: bool) -> str:
    """The ``<div>`` a figure is drawn into and its JSON (``</`` escaped so no string can end the script)."""
    spec = fig.to_json().replace("</", "<\\/")
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
    return {fig_id: _decode(json.loads(spec)) for fig_id, spec in _FIGURE_RE.findall(html)}


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
