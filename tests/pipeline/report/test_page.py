"""The report page: sections, no URL, right-aligned numbers, inline images."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from pipeline.report.page import Section, banner, image, kpis, png_data_uri, render, table


def test_render_has_every_section_and_no_url():
    sections = [Section("one", "First <part>", "<p>a</p>"), Section("two", "Second", "b")]
    html = render("Title & co", ["meta line"], sections)
    for anchor in ("one", "two"):
        assert f'<section id="{anchor}">' in html and f'href="#{anchor}"' in html
    assert "First &lt;part&gt;" in html and "Title &amp; co" in html
    assert re.search(r"https?://", html) is None
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>")


def test_table_right_aligns_numbers_only():
    html = table(
        ["name", "n", "x", "flag"], [["a", 1234, 0.5, True], [None, np.int64(7), 2.0, "x"]]
    )
    assert '<td class="num">1,234</td>' in html
    assert '<td class="num">7</td>' in html
    assert html.count('class="num"') == 4  # two ints, two floats; the bool and strings not
    assert "<td>True</td>" in html and "<td></td>" in html


def test_table_escapes_unless_raw():
    html = table(["h"], [["<b>"]])
    assert "&lt;b&gt;" in html
    assert "<td><b></td>" in table(["h"], [["<b>"]], raw=[0])


def test_png_data_uri_decodes_back_to_the_pixels():
    for shape in ((5, 4, 1), (3, 2, 3)):
        pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        uri = png_data_uri(pixels)
        assert uri.startswith("data:image/png;base64,")
        decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
        np.testing.assert_array_equal(decoded.reshape(shape), pixels)


def test_image_outlines_the_patch_and_escapes_the_caption():
    html = image(np.zeros((10, 10, 1), np.uint8), 'a "b"', patch=(0, 5, 5, 10))
    assert "top:0.0%;left:50.0%;height:50.0%;width:50.0%" in html
    assert 'alt="a &quot;b&quot;"' in html and '<div class="caption">a &quot;b&quot;</div>' in html


def test_kpis_and_banner():
    assert '<div class="kpi bad"><b>3</b>flagged</div>' in kpis([("flagged", "3", "bad")])
    assert banner("x", alarm=True).startswith('<div class="alarm">')
    assert banner("x", alarm=False).startswith('<div class="ok">')
