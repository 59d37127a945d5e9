"""Training killed mid-run resumes from its last epoch and ends as an uninterrupted run would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from tests.conftest import TRAIN_SETTINGS

EPOCHS = 8
SETTINGS = [a if a != "train.epochs=30" else f"train.epochs={EPOCHS}" for a in TRAIN_SETTINGS]
SETTINGS += ["--set", "train.early_stopping_patience=20"]


def _train_args(data_dir: Path, out: Path) -> list[str]:
    return ["train", "--input", str(data_dir / "train.csv"), "--output", str(out)] + SETTINGS


def _kill_after_epoch(args: list[str], out: Path, epoch: int) -> None:
    """Start `vaepipe train` in a subprocess and SIGKILL it once `epoch` epochs are saved."""
    metadata = out / "_work" / "keras" / "resume" / "training_metadata.json"
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    try:
        while time.time() < deadline and process.poll() is None:
            if (
                metadata.exists()
                and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= epoch
            ):
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _scores(model: Path, data: Path, out: Path) -> pd.Series:
    args = ["score", "--model", str(model), "--input", str(data), "--output", str(out)]
    assert main(args) == 0
    return pd.read_parquet(out / "flags").set_index("record_id").score.sort_index()


def test_killed_training_resumes_and_matches_an_uninterrupted_run(data_dir, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_train_args(data_dir, straight)) == 0

    _kill_after_epoch(_train_args(data_dir, resumed), resumed, epoch=3)
    assert not (resumed / "manifest.json").exists(), "the run finished before it was killed"
    capsys.readouterr()
    assert main(_train_args(data_dir, resumed)) == 0
    out = capsys.readouterr().out
    assert "resuming: data already prepared" in out
    assert "resuming training after epoch" in out
    assert not (resumed / "_work").exists()

    a = json.loads((straight / "training_report.json").read_text())["history"]
    b = json.loads((resumed / "training_report.json").read_text())["history"]
    assert len(a["loss"]) == len(b["loss"]) == EPOCHS
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-4)
    scores_a = _scores(straight, data_dir / "normal.csv", tmp_path / "sa")
    scores_b = _scores(resumed, data_dir / "normal.csv", tmp_path / "sb")
    np.testing.assert_allclose(scores_a.to_numpy(), scores_b.to_numpy(), rtol=1e-4, atol=1e-4)


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
