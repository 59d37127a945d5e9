"""Hand-written inline SVG charts: lines, histograms, scatter maps and bars.

No plotting library and no network: each function returns one `<svg class="chart">` element
as text, sized by its viewBox so it scales with the page. The data drawn is always small
(histogram bins, a sample of points), never every record.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#d62728")
GREY = "#9aa0a6"
# Viridis, sampled: low scores dark blue, high scores yellow.
_VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
WIDTH, HEIGHT = 560, 300
MARGIN = (46, 16, 44, 62)  # top, right, bottom, left


@dataclass(frozen=True)
class Mark:
    """A vertical line across a chart at `x`, labelled."""

    x: float
    label: str
    color: str = "#333"
    dashed: bool = True


@dataclass(frozen=True)
class Histogram:
    """Bin edges and heights of one series (heights: densities or shares, as drawn)."""

    label: str
    edges: np.ndarray
    heights: np.ndarray
    color: str
    filled: bool = False


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: float) -> str:
    """A short, readable number for ticks and labels."""
    if value is None or not np.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude < 1e5:
        return f"{int(value)}"
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3):
        return f"{value:.2g}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not np.isfinite(low) or not np.isfinite(high):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.ceil(low / step - 1e-9) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


class _Frame:
    """Maps data coordinates into the plot area of one chart and draws its axes."""

    def __init__(self, x_range, y_range, width=WIDTH, height=HEIGHT, margin=MARGIN):
        self.width, self.height = width, height
        top, right, bottom, left = margin
        self.left, self.top = left, top
        self.plot_w, self.plot_h = width - left - right, height - top - bottom
        self.x0, self.x1 = _padded(*x_range)
        self.y0, self.y1 = _padded(*y_range)

    def x(self, value) -> np.ndarray:
        return self.left + (np.asarray(value, float) - self.x0) / (self.x1 - self.x0) * self.plot_w

    def y(self, value) -> np.ndarray:
        frac = (np.asarray(value, float) - self.y0) / (self.y1 - self.y0)
        return self.top + self.plot_h - frac * self.plot_h

    def axes(self, xlabel: str, ylabel: str, x_ticks=None, y_ticks=None) -> list[str]:
        parts = [
            f'<rect x="{self.left}" y="{self.top}" width="{self.plot_w}" height="{self.plot_h}" '
            'fill="#fff" stroke="#ccc"/>'
        ]
        bottom = self.top + self.plot_h
        for tick in nice_ticks(self.x0, self.x1) if x_ticks is None else x_ticks:
            px = float(self.x(tick))
            parts.append(
                f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom + 4}" stroke="#666"/>'
                f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="middle">{esc(fmt(tick))}</text>'
            )
        for tick in nice_ticks(self.y0, self.y1) if y_ticks is None else y_ticks:
            py = float(self.y(tick))
            parts.append(
                f'<line x1="{self.left}" y1="{py:.1f}" x2="{self.left + self.plot_w}" '
                f'y2="{py:.1f}" stroke="#eee"/>'
                f'<text x="{self.left - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(fmt(tick))}'
                "</text>"
            )
        parts.append(
            f'<text x="{self.left + self.plot_w / 2}" y="{self.height - 8}" '
            f'text-anchor="middle" class="axis">{esc(xlabel)}</text>'
            f'<text transform="translate(14 {self.top + self.plot_h / 2}) rotate(-90)" '
            f'text-anchor="middle" class="axis">{esc(ylabel)}</text>'
        )
        return parts

    def mark(self, mark: Mark, row: int = 0) -> str:
        if not self.x0 <= mark.x <= self.x1:
            return ""
        px = float(self.x(mark.x))
        dash = ' stroke-dasharray="5 3"' if mark.dashed else ""
        # Labels stack downwards from the top so that two close marks do not overlap.
        anchor = "end" if px > self.left + self.plot_w * 0.6 else "start"
        dx = -4 if anchor == "end" else 4
        return (
            f'<line x1="{px:.1f}" y1="{self.top}" x2="{px:.1f}" y2="{self.top + self.plot_h}" '
            f'stroke="{mark.color}" stroke-width="1.5"{dash}/>'
            f'<text x="{px + dx:.1f}" y="{self.top + 14 + 14 * row}" text-anchor="{anchor}" '
            f'fill="{mark.color}" class="mark">{esc(mark.label)}</text>'
        )


def _padded(low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not np.isfinite(low) or not np.isfinite(high):
        return 0.0, 1.0
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def _svg(parts: Sequence[str], title: str, width=WIDTH, height=HEIGHT, legend=()) -> str:
    items = []
    x = MARGIN[3]
    for label, color in legend:  # one row of legend entries under the title
        items.append(
            f'<rect x="{x}" y="26" width="12" height="12" fill="{color}"/>'
            f'<text x="{x + 16}" y="36">{esc(label)}</text>'
        )
        x += 28 + 7 * len(label)
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>'
        f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{esc(title)}</text>'
        + "".join(items)
        + "".join(parts)
        + "</svg>"
    )


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    marks: Sequence[Mark] = (),
    dashed: Sequence[str] = (),
) -> str:
    """One polyline (with dots) per series: `{label: (x, y)}`; series in `dashed` are dashed."""
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    finite = ys[np.isfinite(ys)]
    frame = _Frame((xs.min(), xs.max()), (finite.min(), finite.max()) if finite.size else (0, 1))
    parts = frame.axes(xlabel, ylabel)
    legend = []
    for i, (label, (x, y)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        legend.append((label, color))
        x, y = np.asarray(x, float), np.asarray(y, float)
        keep = np.isfinite(y)
        points = " ".join(
            f"{a:.1f},{b:.1f}" for a, b in zip(frame.x(x[keep]), frame.y(y[keep]), strict=False)
        )
        dash = ' stroke-dasharray="6 3"' if label in dashed else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
        )
        if keep.sum() <= 60:
            parts += [
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>'
                for a, b in zip(frame.x(x[keep]), frame.y(y[keep]), strict=False)
            ]
    parts += [frame.mark(m, i) for i, m in enumerate(marks)]
    return _svg(parts, title, legend=legend)


def histogram_chart(
    hists: Sequence[Histogram],
    title: str,
    xlabel: str,
    ylabel: str = "density",
    marks: Sequence[Mark] = (),
    x_labels: Sequence[str] | None = None,
) -> str:
    """Step histograms over shared or separate bin edges (filled ones drawn first).

    With `x_labels`, the bins are drawn as equal-width categories named by the labels
    (e.g. the deciles of a training distribution).
    """
    if x_labels is not None:
        edges = np.arange(len(x_labels) + 1, dtype=float)
        hists = [Histogram(h.label, edges, h.heights, h.color, h.filled) for h in hists]
    low = min(float(h.edges[0]) for h in hists)
    high = max(float(h.edges[-1]) for h in hists)
    top = max(float(np.nanmax(h.heights)) if len(h.heights) else 0.0 for h in hists) or 1.0
    frame = _Frame((low, high), (0.0, top * 1.08))
    x_ticks = [] if x_labels is not None else None
    parts = frame.axes(xlabel, ylabel, x_ticks=x_ticks)
    if x_labels is not None:
        parts += _bin_labels(frame, x_labels)
    for hist in sorted(hists, key=lambda h: not h.filled):
        parts.append(_steps(frame, hist))
    parts += [frame.mark(m, i) for i, m in enumerate(marks)]
    return _svg(parts, title, legend=[(h.label, h.color) for h in hists])


def _bin_labels(frame: _Frame, labels: Sequence[str]) -> list[str]:
    """Category names centred under their bins, or, for numeric bins (labels "a–b"), the
    edge values at the bin boundaries (thinned out so that they never overlap)."""
    bottom = frame.top + frame.plot_h
    if all("–" in label for label in labels):
        edges = [label.split("–")[0] for label in labels] + [labels[-1].split("–")[1]]
        step = max(1, math.ceil(len(edges) / 7))
        return [
            f'<text x="{float(frame.x(i)):.1f}" y="{bottom + 16}" text-anchor="middle" '
            f'class="small">{esc(edges[i])}</text>'
            for i in range(0, len(edges), step)
        ]
    step = max(1, math.ceil(len(labels) / 12))
    return [
        f'<text x="{float(frame.x(i + 0.5)):.1f}" y="{bottom + 16}" text-anchor="middle" '
        f'class="small">{esc(labels[i][:14])}</text>'
        for i in range(0, len(labels), step)
    ]


def _steps(frame: _Frame, hist: Histogram) -> str:
    xs = frame.x(hist.edges)
    heights = np.nan_to_num(np.asarray(hist.heights, float))
    ys = frame.y(heights)
    base = float(frame.y(0.0))
    points = [f"{xs[0]:.1f},{base:.1f}"]
    for i, y in enumerate(ys):
        points += [f"{xs[i]:.1f},{y:.1f}", f"{xs[i + 1]:.1f},{y:.1f}"]
    points.append(f"{xs[-1]:.1f},{base:.1f}")
    if hist.filled:
        return (
            f'<polygon points="{" ".join(points)}" fill="{hist.color}" fill-opacity="0.35" '
            f'stroke="{hist.color}"/>'
        )
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{hist.color}" '
        'stroke-width="2"/>'
    )


def scatter_chart(
    x: np.ndarray,
    y: np.ndarray,
    color_values: np.ndarray,
    title: str,
    xlabel: str,
    ylabel: str,
    color_label: str,
    highlight: np.ndarray | None = None,
) -> str:
    """Points coloured by `color_values` (viridis, with a colour bar); `highlight`ed points
    get a red ring. The caller passes a sample: every point is one SVG element."""
    frame = _Frame(_range(x, 0.04), _range(y, 0.04), height=360)
    parts = frame.axes(xlabel, ylabel)
    lo, hi = _range(color_values)
    scaled = (np.asarray(color_values, float) - lo) / ((hi - lo) or 1.0)
    order = np.argsort(scaled, kind="stable")  # high scores drawn last, on top
    px, py = frame.x(x), frame.y(y)
    for i in order:
        parts.append(
            f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="2.6" fill="{_viridis(scaled[i])}" '
            'fill-opacity="0.85"/>'
        )
    if highlight is not None:
        parts += [
            f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="4.5" fill="none" stroke="#d62728"/>'
            for i in np.flatnonzero(highlight)
        ]
    parts.append(_colour_bar(frame, lo, hi, color_label))
    return _svg(
        parts, title, height=360, legend=[("flagged", "#d62728")] if highlight is not None else ()
    )


def _colour_bar(frame: _Frame, lo: float, hi: float, label: str) -> str:
    x, y, width = frame.left + frame.plot_w - 150, 24, 150
    stops = "".join(
        f'<stop offset="{i / (len(_VIRIDIS) - 1):.2f}" stop-color="{c}"/>'
        for i, c in enumerate(_VIRIDIS)
    )
    return (
        f'<defs><linearGradient id="viridis">{stops}</linearGradient></defs>'
        f'<rect x="{x}" y="{y}" width="{width}" height="10" fill="url(#viridis)"/>'
        f'<text x="{x - 4}" y="{y + 9}" text-anchor="end" class="small">{esc(label)} '
        f"{esc(fmt(lo))}</text>"
        f'<text x="{x + width}" y="{y + 22}" text-anchor="end" class="small">{esc(fmt(hi))}</text>'
    )


def _viridis(fraction: float) -> str:
    fraction = min(max(float(fraction), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(fraction), len(_VIRIDIS) - 2)
    t = fraction - i
    a, b = _rgb(_VIRIDIS[i]), _rgb(_VIRIDIS[i + 1])
    return "#" + "".join(f"{round(p + (q - p) * t):02x}" for p, q in zip(a, b, strict=False))


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def _range(values: np.ndarray, pad: float = 0.0) -> tuple[float, float]:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    return low - pad * (high - low), high + pad * (high - low)


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    limits: Sequence[float] | None = None,
    limit_label: str = "threshold",
    max_bars: int = 30,
    beyond: str = "#d62728",
    within: str | None = None,
) -> str:
    """Horizontal grouped bars, one group per label; `limits` draws a tick per label (e.g. its
    drift threshold) and colours the bars beyond it `beyond` (and those within it `within`,
    default: the series colour)."""
    labels = list(labels)[:max_bars]
    names = list(series)
    values = {k: np.asarray(v, float)[: len(labels)] for k, v in series.items()}
    row_h = 8 + 12 * len(names)
    height = MARGIN[0] + MARGIN[2] + row_h * max(len(labels), 1)
    left = min(220, 24 + 7 * max((len(str(label)) for label in labels), default=4))
    everything = np.concatenate([*values.values(), np.asarray(limits or [], float)])
    top = float(np.nanmax(everything)) if everything.size else 1.0
    frame = _Frame((0.0, (top or 1.0) * 1.05), (0.0, 1.0), height=height,
                   margin=(MARGIN[0], MARGIN[1], MARGIN[2], left))  # fmt: skip
    parts = frame.axes(xlabel, "", y_ticks=[])
    for row, label in enumerate(labels):
        y = frame.top + row * row_h + 4
        parts.append(
            f'<text x="{left - 6}" y="{y + row_h / 2 + 2:.1f}" text-anchor="end">'
            f"{esc(label)}</text>"
        )
        for j, name in enumerate(names):
            value = values[name][row]
            color = PALETTE[j % len(PALETTE)]
            if limits is not None:
                color = beyond if value > limits[row] else (within or color)
            width = max(float(frame.x(np.nan_to_num(value))) - frame.left, 0.0)
            parts.append(
                f'<rect x="{frame.left}" y="{y + 12 * j:.1f}" width="{width:.1f}" height="10" '
                f'fill="{color}"><title>{esc(label)} {esc(name)}: {esc(fmt(value))}</title>'
                "</rect>"
            )
        if limits is not None:
            lx = float(frame.x(limits[row]))
            parts.append(
                f'<line x1="{lx:.1f}" y1="{y - 2:.1f}" x2="{lx:.1f}" y2="{y + row_h - 6:.1f}" '
                'stroke="#333" stroke-width="2"/>'
            )
    legend = [(n, PALETTE[j % len(PALETTE)]) for j, n in enumerate(names)]
    if limits is not None:
        legend += [(limit_label, "#333")]
    return _svg(parts, title, height=height, legend=legend)
