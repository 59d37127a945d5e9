"""leave_report: a report that cannot be drawn is one WARNING line, never an error."""

from __future__ import annotations

from pipeline.jobs.reports import leave_report


def test_not_a_bundle_gives_none_and_one_warning(tmp_path):
    lines: list[str] = []
    assert leave_report(str(tmp_path), echo=lines.append) is None
    assert len(lines) == 1
    assert lines[0].startswith("WARNING no report.html: BundleError: ")
    assert "manifest.json is missing" in lines[0]
    assert not (tmp_path / "report.html").exists()
