"""The report's HTML page: one self-contained file (inline CSS, SVG and data: images; no URL).

A small inline script records script errors and counts the charts that rendered (non-empty
SVGs, decoded images) into attributes of <body>, so that a headless browser, or a person with
the developer tools open, can check that the page is whole (`data-charts`, `data-rendered`,
`data-errors`, `data-requests`: resources fetched other than data: URIs, which must be 0).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.report.charts import esc, fmt

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #f6f7f9; }
header { background: #1f3b57; color: #fff; padding: 14px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { opacity: .85; font-size: 13px; word-break: break-all; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd;
      padding: 6px 28px; z-index: 2; }
nav a { margin-right: 16px; color: #1f3b57; text-decoration: none; font-weight: 600; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 24px 40px; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; margin: 18px 0;
          padding: 4px 20px 16px; }
h2 { font-size: 17px; margin: 14px 0 6px; color: #1f3b57; }
p.note { color: #555; margin: 4px 0 10px; max-width: 1000px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr));
        gap: 10px 18px; align-items: start; }
svg.chart { width: 100%; height: auto; font-size: 11px; fill: #333; }
svg.chart text.title { font-size: 13px; font-weight: 600; }
svg.chart text.axis { font-size: 12px; }
svg.chart text.small { font-size: 10px; }
svg.chart text.mark { font-size: 11px; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 12px; }
.kpi { border: 1px solid #e1e4e8; border-radius: 6px; padding: 6px 12px; min-width: 130px; }
.kpi b { display: block; font-size: 18px; }
.kpi.bad { border-color: #d62728; background: #fdecec; }
.kpi.good { border-color: #2ca02c; background: #eef8ee; }
.alarm { border-left: 4px solid #d62728; background: #fdecec; padding: 6px 10px; margin: 8px 0; }
.ok { border-left: 4px solid #2ca02c; background: #eef8ee; padding: 6px 10px; margin: 8px 0; }
.pair { display: inline-block; position: relative; margin-right: 4px; }
img.chart-img { image-rendering: pixelated; width: 84px; height: 84px; border: 1px solid #ccc;
                display: block; }
.pair .patch { position: absolute; border: 2px solid #d62728; box-sizing: border-box; }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
.caption { font-size: 11px; color: #555; text-align: center; }
"""

# Records errors and counts what rendered; see the module docstring.
CHECK_SCRIPT = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
function vaepipeCheck() {
  var charts = document.querySelectorAll('svg.chart, img.chart-img'), rendered = 0;
  charts.forEach(function (el) {
    var box = el.getBoundingClientRect();
    var ok = el.tagName.toLowerCase() === 'img' ? (el.complete && el.naturalWidth > 0)
                                                 : el.childElementCount > 2;
    if (ok && box.width > 0 && box.height > 0) { rendered += 1; }
  });
  var requests = performance.getEntriesByType('resource').filter(function (r) {
    return r.name.indexOf('data:') !== 0; }).length;
  document.body.setAttribute('data-charts', charts.length);
  document.body.setAttribute('data-rendered', rendered);
  document.body.setAttribute('data-requests', requests);
  document.body.setAttribute('data-errors', window.__errors.join(' | '));
}
window.addEventListener('load', vaepipeCheck);
"""


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def render(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    lines = "".join(f"<div>{esc(line)}</div>" for line in meta)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{CHECK_SCRIPT}</script>"
        f'</head><body><header><h1>{esc(title)}</h1><div class="meta">{lines}</div></header>'
        f"<nav>{nav}</nav><main>{body}</main></body></html>"
    )


def grid(*charts: str) -> str:
    return '<div class="grid">' + "".join(f"<div>{c}</div>" for c in charts if c) + "</div>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def kpis(items: Sequence[tuple[str, str, str]]) -> str:
    """Key figures: (label, value, state) with state '', 'good' or 'bad'."""
    cells = "".join(
        f'<div class="kpi {state}"><b>{esc(value)}</b>{esc(label)}</div>'
        for label, value, state in items
    )
    return f'<div class="kpis">{cells}</div>'


def banner(text: str, alarm: bool) -> str:
    return f'<div class="{"alarm" if alarm else "ok"}">{esc(text)}</div>'


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], raw: Sequence[int] = ()) -> str:
    """A table; numbers are right-aligned and formatted; columns in `raw` hold HTML as is."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    out = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i in raw:
                cells.append(f"<td>{value}</td>")
            elif isinstance(value, float | np.floating):
                cells.append(f'<td class="num">{esc(fmt(float(value)))}</td>')
            elif isinstance(value, int | np.integer) and not isinstance(value, bool):
                cells.append(f'<td class="num">{int(value):,}</td>')
            else:
                cells.append(f"<td>{esc('' if value is None else value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(out)}</table>"


def png_data_uri(pixels: np.ndarray) -> str:
    """uint8 pixels `[h, w, 1 or 3]` as a data: URI (inline: no file, no request)."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image(pixels: np.ndarray, caption: str, patch: tuple[int, int, int, int] | None = None) -> str:
    """An image (drawn 84 px wide, pixelated) with an optional outlined patch (y0, y1, x0, x1
    in pixels) and a caption."""
    box = ""
    if patch is not None:
        height, width = pixels.shape[:2]
        y0, y1, x0, x1 = patch
        box = (
            f'<div class="patch" style="top:{100 * y0 / height:.1f}%;left:{100 * x0 / width:.1f}%;'
            f'height:{100 * (y1 - y0) / height:.1f}%;width:{100 * (x1 - x0) / width:.1f}%"></div>'
        )
    return (
        f'<div class="pair"><div style="position:relative"><img class="chart-img" '
        f'alt="{esc(caption)}" src="{png_data_uri(pixels)}">{box}</div>'
        f'<div class="caption">{esc(caption)}</div></div>'
    )
