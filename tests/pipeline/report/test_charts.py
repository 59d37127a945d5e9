"""The SVG charts: ticks, escaping, what each chart draws, and that none names a URL."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.report import charts
from pipeline.report.charts import Histogram, Mark


def test_nice_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert charts.nice_ticks(0.13, 0.91) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert charts.nice_ticks(3, 3) == [3]
    assert charts.nice_ticks(float("nan"), 1) == []


@pytest.mark.parametrize(
    "value, text", [(20.0, "20"), (12.34, "12.3"), (0.1234, "0.123"), (123456.0, "1.2e+05"),
                    (0.0001, "0.0001"), (float("nan"), "n/a")],
)  # fmt: skip
def test_fmt(value, text):
    assert charts.fmt(value) == text


def test_line_chart_draws_one_polyline_per_series_and_the_marks():
    svg = charts.line_chart(
        {"training": ([1, 2, 3], [3.0, 2.0, 1.5]), "validation": ([1, 2, 3], [3.2, 2.1, np.nan])},
        "loss <per> epoch", "epoch", "nats", [Mark(2, "kept: epoch 2")], dashed=["validation"],
    )  # fmt: skip
    assert svg.count("<polyline") == 2 and svg.count("stroke-dasharray") == 2  # series + mark
    assert "kept: epoch 2" in svg and "loss &lt;per&gt; epoch" in svg  # escaped title
    # The NaN epoch is left out of the validation line: 3 + 2 dots.
    assert svg.count("<circle") == 5


def test_histogram_heights_map_to_the_plot():
    edges = np.array([0.0, 1.0, 2.0])
    svg = charts.histogram_chart(
        [Histogram("a", edges, np.array([1.0, 0.5]), "#000", filled=True)], "h", "x"
    )
    assert "<polygon" in svg
    points = re.search(r'<polygon points="([^"]+)"', svg).group(1).split()
    ys = sorted({float(p.split(",")[1]) for p in points})
    # Baseline, the half-height bin and the full-height bin: three distinct levels.
    assert len(ys) == 3


def test_bar_chart_colours_bars_beyond_their_limit():
    svg = charts.bar_chart(["a", "b"], {"value": [0.05, 0.3]}, "drift", "JS", limits=[0.1, 0.1])
    fills = re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="10" fill="([^"]+)"', svg)
    assert fills == [charts.PALETTE[0], "#d62728"]


def test_scatter_draws_every_point_given_and_rings_the_highlighted():
    x, y = np.arange(10.0), np.arange(10.0) ** 2
    svg = charts.scatter_chart(x, y, x, "map", "pc1", "pc2", "score",
                               highlight=np.arange(10) >= 8)  # fmt: skip
    assert svg.count('r="2.6"') == 10 and svg.count('r="4.5"') == 2


def test_no_chart_contains_a_url():
    svgs = [
        charts.line_chart({"a": ([0, 1], [0, 1])}, "t", "x", "y"),
        charts.histogram_chart([Histogram("a", np.arange(3.0), np.ones(2), "#000")], "t", "x"),
        charts.scatter_chart(np.arange(3.0), np.arange(3.0), np.arange(3.0), "t", "x", "y", "c"),
        charts.bar_chart(["a"], {"v": [1.0]}, "t", "x"),
    ]
    for svg in svgs:
        assert "http" not in svg and "url(" not in svg.replace("url(#viridis)", "")
