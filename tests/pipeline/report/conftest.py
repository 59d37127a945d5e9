"""Score outputs for the report tests: the session's tabular and image models, each scoring a
batch through the real CLI (Beam DirectRunner, TFDV), once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main


@pytest.fixture(scope="session")
def scores_dir(model_dir, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report_scores") / "scores"
    code = main(["score", "--model", str(model_dir), "--input", str(data_dir / "mixed.csv"),
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="session")
def image_scores_dir(image_model_dir, image_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report_image_scores") / "scores"
    code = main(["score", "--model", str(image_model_dir), "--input",
                 str(image_dir / "held_out"), "--output", str(out)])  # fmt: skip
    assert code == 0
    return out
