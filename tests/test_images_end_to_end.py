"""Images end to end through the CLI on the DirectRunner: train on pen strokes, score held-out
strokes and rings (another kind), decode the codes back to PNG files. Tiny and seeded.

With the MNIST test set in ../shared (raw IDX files), the same job is also checked on real
handwriting: trained on the digit 1, scoring other digits higher.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from configs import builtin_config_path
from pipeline.cli import EXIT_BAD_INPUT, main
from pipeline.cli.demo_images import strokes, write_pngs
from tests.conftest import IMAGE_TRAIN_SETTINGS

MNIST = Path(
    os.environ.get("VAEPIPE_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared/data/mnist")
)
PATCH_NAME = re.compile(r"y(\d+):(\d+) x(\d+):(\d+)")


def _score(model_dir: Path, input_path: str, out: Path, *extra: str) -> int:
    return main(["score", "--model", str(model_dir), "--input", input_path,
                 "--output", str(out), *extra])  # fmt: skip


@pytest.fixture(scope="module")
def scored(image_model_dir, image_dir, tmp_path_factory):
    """Held-out strokes and rings scored in one run, with 14-pixel patches."""
    out = tmp_path_factory.mktemp("image_scores") / "out"
    code = _score(image_model_dir, str(image_dir / "held_out"), out, "--set", "image.patch_size=14")
    assert code == 0
    flags = pd.read_parquet(out / "flags")
    flags["ring"] = flags.record_id.str.contains("/rings/")
    return out, flags


def test_the_image_bundle_holds_an_image_encoding_and_schema(image_model_dir):
    manifest = json.loads((image_model_dir / "manifest.json").read_text())
    assert manifest["data_kind"] == "image"
    encoding = json.loads((image_model_dir / "encoding.json").read_text())
    assert encoding == {
        "height": 28, "width": 28, "mode": "L", "likelihood": "bernoulli", "patch_size": 7
    }  # fmt: skip
    schema = (image_model_dir / "schema.pbtxt").read_text()
    for feature in ("mean_intensity", "std_intensity", "file_bytes", "format", "mode", "height"):
        assert f'name: "{feature}"' in schema
    assert "px_0_0" not in schema  # pixels stay out of TFDV
    history = json.loads((image_model_dir / "training_report.json").read_text())["history"]
    assert history["val_elbo"][-1] > history["val_elbo"][0] + 50  # nats per image
    assert not (image_model_dir / "_work").exists()


def test_held_out_images_flag_near_target_and_another_kind_scores_higher(scored, capsys):
    out, flags = scored
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_read"] == summary["rows_scored"] == 500
    assert summary["rows_dead_lettered"] == 0
    normal, ring = flags[~flags.ring], flags[flags.ring]
    assert (len(normal), len(ring)) == (400, 100)
    flag_rate = normal.is_anomaly.mean()
    assert 0.01 <= flag_rate <= 0.12  # scoring.target_fpr = 0.05
    auroc = roc_auc_score(flags.ring, flags.score)
    assert auroc > 0.95
    assert ring.is_anomaly.mean() > 0.8
    assert flags.p_value.between(0, 1).all() and np.isfinite(flags.kl).all()
    with capsys.disabled():
        print(
            f"\nimages: flag rate on held-out strokes {flag_rate:.3f} (target 0.05), rings "
            f"flagged {ring.is_anomaly.mean():.3f}, AUROC strokes vs rings {auroc:.4f}"
        )


def test_top_features_are_image_patches_ranked_by_contribution(scored):
    _, flags = scored
    names = set(flags.top_feature_1) | set(flags.top_feature_2) | set(flags.top_feature_3)
    assert names <= {f"y{y}:{y + 14} x{x}:{x + 14}" for y in (0, 14) for x in (0, 14)}
    assert (flags.top_contribution_1 >= flags.top_contribution_2).all()
    ring = flags[flags.ring].iloc[0]
    assert PATCH_NAME.fullmatch(ring.top_feature_1) and ring.top_contribution_1 > 0


def test_codes_decode_back_to_images_close_to_the_originals(
    scored, image_model_dir, tmp_path, capsys
):
    out, _ = scored
    codes = pd.read_parquet(out / "codes")
    assert len(codes) == 500 and len(codes.code.iloc[0]) == 8  # int8 x latent_dim
    decoded_dir = tmp_path / "decoded"
    code = main(["decode", "--model", str(image_model_dir), "--input", str(out / "codes"),
                 "--output", str(decoded_dir)])  # fmt: skip
    assert code == 0
    index = pd.read_parquet(decoded_dir / "index").set_index("record_id")
    assert len(index) == 500 and index.image.is_unique
    normal = [p for p in index.index if "/normal/" in p]
    assert len(normal) == 400
    original = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 255 for p in normal])
    decoded = np.stack(
        [np.asarray(Image.open(index.image[p]), dtype=np.float64) / 255 for p in normal]
    )
    assert decoded.shape == (400, 28, 28)
    error = np.abs(decoded - original).mean()
    mean_image_error = np.abs(original - original.mean(axis=0)).mean()
    assert error < 0.75 * mean_image_error and error < 0.07
    # the decoded stroke stands where the original's does (the code kept its position)
    ink_column = np.abs(decoded.sum(axis=1).argmax(axis=1) - original.sum(axis=1).argmax(axis=1))
    assert np.median(ink_column) <= 1 and np.mean(ink_column <= 2) > 0.9
    with capsys.disabled():
        print(
            f"\nimages: decoded from 8 int8 codes, mean absolute pixel error {error:.4f} "
            f"(predicting the mean image: {mean_image_error:.4f})"
        )


def test_a_config_for_another_image_size_is_refused(image_model_dir, image_dir, tmp_path, capsys):
    other_size = ["--set", "image.height=32"]  # layered on the model's own config
    code = _score(image_model_dir, str(image_dir / "held_out"), tmp_path / "o", *other_size)
    assert code == EXIT_BAD_INPUT
    assert "trained on 28 x 28 L images" in capsys.readouterr().err
    # A config for tables changes settings fixed at training (the data kind among them).
    tables = ["--config", str(builtin_config_path("tabular"))]
    assert _score(image_model_dir, str(image_dir / "held_out"), tmp_path / "o", *tables) == 2
    error = capsys.readouterr().err
    assert "settings fixed at training" in error and "data.kind" in error
    assert _score(image_model_dir, str(tmp_path / "nothing/"), tmp_path / "o") == EXIT_BAD_INPUT
    assert "no input files match" in capsys.readouterr().err
    bigquery = ["train", "--input", "bq://p.d.t", "--output", str(tmp_path / "m")]
    assert main(bigquery + IMAGE_TRAIN_SETTINGS) == EXIT_BAD_INPUT
    assert "reads image files, not BigQuery" in capsys.readouterr().err


def test_the_image_demo_flags_rings_and_decodes_png_files(tmp_path, capsys):
    """`vaepipe demo --kind image`: no user data, every output written, rings stand out."""
    assert main(["demo", "--kind", "image", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "scores" / "summary.json").read_text())
    assert summary["rows_read"] == summary["rows_scored"] + summary["rows_dead_lettered"] == 220
    read = f"{summary['rows_read']} images read = {summary['rows_scored']} scored + "
    assert read in printed and "target 5.0%" in printed
    flags = pd.read_parquet(tmp_path / "scores" / "flags")
    ring = flags.record_id.str.contains("/rings/")
    assert (int((~ring).sum()), int(ring.sum())) == (200, 20)
    normal_rate, ring_rate = flags.is_anomaly[~ring].mean(), flags.is_anomaly[ring].mean()
    assert normal_rate <= 0.15 and ring_rate >= 0.8 and ring_rate > normal_rate + 0.5
    assert len(pd.read_parquet(tmp_path / "scores" / "codes")) == 220
    index = pd.read_parquet(tmp_path / "decoded" / "index")
    assert len(index) == 220 and all(Path(p).is_file() for p in index.image)
    assert Image.open(index.image.iloc[0]).size == (28, 28)
    with capsys.disabled():
        print(f"\nimage demo: normal flagged {normal_rate:.3f}, rings flagged {ring_rate:.3f}")


# -------------------------------------------------------------------------------- MNIST


def read_idx(path: Path) -> np.ndarray:
    """A raw IDX file (gzip): uint8 images [n, rows, cols] or labels [n]."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_mnist_ones_train_and_other_digits_score_higher(tmp_path, capsys):
    images_file = MNIST / "t10k-images-idx3-ubyte.gz"
    labels_file = MNIST / "t10k-labels-idx1-ubyte.gz"
    if not (images_file.exists() and labels_file.exists()):
        pytest.skip(f"MNIST test set not found in {MNIST} (set VAEPIPE_MNIST_DIR)")
    images, labels = read_idx(images_file), read_idx(labels_file)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    # Seeded shuffle: the test set's first half was written by other people than its second.
    rng = np.random.default_rng(0)
    ones = rng.permutation(images[labels == 1])
    others = rng.permutation(images[np.isin(labels, (0, 2, 8))])[:150]
    write_pngs(tmp_path / "train", ones[:700], "one")
    write_pngs(tmp_path / "batch" / "ones", ones[700:1100], "one")
    write_pngs(tmp_path / "batch" / "others", others, "other")
    model = tmp_path / "model"
    assert main(["train", "--input", str(tmp_path / "train"), "--output", str(model)]
                + IMAGE_TRAIN_SETTINGS) == 0  # fmt: skip
    assert _score(model, str(tmp_path / "batch"), tmp_path / "out") == 0
    flags = pd.read_parquet(tmp_path / "out" / "flags")
    other = flags.record_id.str.contains("/others/")
    flag_rate = flags.is_anomaly[~other].mean()
    auroc = roc_auc_score(other, flags.score)
    assert 0.005 <= flag_rate <= 0.12 and flags.is_anomaly[other].mean() > 0.5 and auroc > 0.95
    with capsys.disabled():
        print(
            f"\nMNIST: trained on 700 ones; flag rate on 400 held-out ones {flag_rate:.3f} "
            f"(target 0.05), AUROC ones vs 0/2/8 {auroc:.4f}"
        )


def test_generated_strokes_are_what_the_tests_assume():
    """The generator: ink on black, a stroke near the middle column (a failed test above should
    not be a drawing bug)."""
    image = strokes(50, seed=0).astype(np.float64)
    assert image.max() == 255 and np.median(image) == 0
    columns = image.sum(axis=(0, 1))
    assert 10 <= int(np.argmax(columns)) <= 18


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
