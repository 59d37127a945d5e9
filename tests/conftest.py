"""Session fixtures shared by the end-to-end tests: synthetic data and one trained bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.demo_data import synthetic_table

TRAIN_SETTINGS = [
    "--set", "data.id_column=id",
    "--set", "data.exclude_columns=[label]",
    "--set", "train.epochs=30",
    "--set", "model.hidden_units=[64,32]",
    "--set", "model.kl_warmup_epochs=2",
    "--set", "scoring.target_fpr=0.05",
    "--set", "data.chunk_rows=512",
    "--set", "train.batch_size=128",
]  # fmt: skip


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    synthetic_table(12000, anomaly_rate=0.0, seed=11).to_csv(root / "train.csv", index=False)
    synthetic_table(2000, anomaly_rate=0.0, seed=12).to_csv(root / "normal.csv", index=False)
    synthetic_table(1000, anomaly_rate=0.1, seed=13).to_csv(root / "mixed.csv", index=False)
    return root


@pytest.fixture(scope="session")
def model_dir(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "bundle"
    code = main(["train", "--input", str(data_dir / "train.csv"), "--output", str(out)]
                + TRAIN_SETTINGS)  # fmt: skip
    assert code == 0
    return out
