"""Session fixtures shared by the end-to-end tests: synthetic data and trained bundles (one
for tables, one for images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import builtin_config_path
from pipeline.cli import main
from pipeline.cli.demo_data import synthetic_table
from pipeline.cli.demo_images import rings, strokes, write_pngs

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


# A small image model: 1000 pen strokes (about 600 train, 300 calibration), 28 x 28 grey.
IMAGE_TRAIN_SETTINGS = [
    "--config", str(builtin_config_path("image")),
    "--set", "train.epochs=20",
    "--set", "train.batch_size=32",
    "--set", "train.learning_rate=0.003",
    "--set", "train.calibration_fraction=0.3",
    "--set", "model.hidden_units=[128,32]",
    "--set", "model.latent_dim=8",
    "--set", "model.kl_warmup_epochs=3",
    "--set", "scoring.target_fpr=0.05",
]  # fmt: skip


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """train/: 1000 strokes and 3 bad files (dead letters in training); held_out/normal/: 400
    more strokes, held_out/rings/: 100 rings (another kind of image)."""
    root = tmp_path_factory.mktemp("images")
    write_pngs(root / "train", strokes(1000, seed=21), "stroke")
    (root / "train" / "empty.png").write_bytes(b"")
    (root / "train" / "notes.png").write_text("not an image")
    (root / "train" / "labels.csv").write_text("file,label\n")
    write_pngs(root / "held_out" / "normal", strokes(400, seed=22), "stroke")
    write_pngs(root / "held_out" / "rings", rings(100, seed=23), "ring")
    return root


@pytest.fixture(scope="session")
def image_model_dir(image_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image_model") / "bundle"
    code = main(["train", "--input", str(image_dir / "train"), "--output", str(out)]
                + IMAGE_TRAIN_SETTINGS)  # fmt: skip
    assert code == 0
    return out
