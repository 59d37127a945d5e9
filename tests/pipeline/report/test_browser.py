"""The report as a person sees it: headless Chromium opens it with every network name
unresolvable, and the page's own check says every chart rendered, no script failed and
nothing was fetched. Needs `chromium` (Debian: `apt-get install -y chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image, ImageStat

from pipeline.report.build import write_report

BROWSER = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
    None,
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None,
        reason="headless Chromium is not installed (Debian: apt-get install -y chromium)",
    ),
]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
    '--host-resolver-rules=MAP * ~NOTFOUND', "--virtual-time-budget=10000",
]  # fmt: skip
# Charts a report of a scored batch holds at least: 4 training, 1 calibration, 2 batch,
# 1 latent, 1 drift, 2 code length; then marginals (tables) or images.
MIN_CHARTS = {"tabular": 11 + 8, "image": 11 + 12 * 2 + 24}


def _browser(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, *FLAGS, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_every_chart_renders_offline_without_errors(kind, request, tmp_path):
    model = request.getfixturevalue("model_dir" if kind == "tabular" else "image_model_dir")
    scores = request.getfixturevalue("scores_dir" if kind == "tabular" else "image_scores_dir")
    path = tmp_path / f"{kind}.html"
    write_report(str(model), str(scores), str(path), echo=lambda _: None)
    html = path.read_text()
    assert not re.search(r"https?://", html), "the page names a URL"

    dom = _browser("--dump-dom", path.as_uri())
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, f"no DOM from chromium: {dom.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1)))
    assert attrs.get("errors") == "", attrs
    assert attrs.get("requests") == "0", attrs
    assert int(attrs["charts"]) >= MIN_CHARTS[kind], attrs
    assert attrs["rendered"] == attrs["charts"], attrs
    assert "Uncaught" not in dom.stderr

    shot = tmp_path / f"{kind}.png"
    _browser(f"--screenshot={shot}", "--window-size=1400,4000", path.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1400, 4000)
        # Not a blank page: the charts and tables vary the pixels.
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 20
