"""The sweep page from hand-made points: the table's values, no URL."""

from __future__ import annotations

import re

from pipeline.jobs.sweep import SweepPoint
from pipeline.report.sweep import write_sweep_page


def _points(auroc=(0.91, 0.87)):
    return [
        SweepPoint("0.1", "m/a", 12.5, 30.5, -29.5, -28.5, 16, auroc[0]),
        SweepPoint("1", "m/b", 4.0, 41.5, -31.5, -31.0, 16, auroc[1]),
    ]


def test_the_page_holds_the_table_values_and_no_url(tmp_path):
    out = write_sweep_page("model.beta", _points(), str(tmp_path / "sweep.html"))
    html = open(out).read()
    assert out == str(tmp_path / "sweep.html")
    assert "vaepipe sweep: model.beta" in html and "2 bundles" in html
    for anchor in ("rd", "table", "auroc"):
        assert f'<section id="{anchor}">' in html
    table = html[html.index('<section id="table">') :]
    table = table[: table.index("</section>")]
    cells = ["12.5", "30.5", "43", "-29.5", "-28.5", "0.91", "4", "41.5", "45.5", "-31.5", "0.87"]
    for value in cells:  # the report's short number format (charts.fmt)
        assert f'<td class="num">{value}</td>' in table, value
    assert "<th>IWAE nats</th>" in table and "<th>AUROC</th>" in table
    assert "model.beta=0.1" in html and "IWAE (K=16)" in html
    assert re.search(r"https?://", html) is None


def test_no_labels_no_detection_section(tmp_path):
    out = write_sweep_page("model.beta", _points((None, None)), str(tmp_path / "s.html"))
    html = open(out).read()
    assert '<section id="auroc">' not in html
    assert "AUROC" not in html
