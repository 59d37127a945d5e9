"""A real train -> score -> decode run through the CLI on the DirectRunner (tiny, seeded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import EXIT_BAD_INPUT, EXIT_VALIDATION, main
from tests.conftest import TRAIN_SETTINGS


def _score(model_dir: Path, input_path: Path, out: Path, *extra: str) -> int:
    args = ["score", "--model", str(model_dir), "--input", str(input_path), "--output", str(out)]
    return main(args + list(extra))


def test_bundle_has_every_part_and_the_training_terms(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert set(manifest["sha256"]) <= {p.name for p in model_dir.iterdir()}
    report = json.loads((model_dir / "training_report.json").read_text())
    history = report["history"]
    assert report["batch_size"] == 128  # train.batch_size: 9,600 rows make enough steps
    for key in ("reconstruction_nll", "kl", "elbo", "val_reconstruction_nll", "val_kl", "val_elbo"):
        assert len(history[key]) >= 1, key
    # training lowers the negative ELBO on held-out data
    assert history["val_elbo"][-1] > history["val_elbo"][0]
    assert min(history["kl"]) > 0.0
    assert not (model_dir / "_work").exists()


def test_scoring_accounts_for_every_row_and_flags_near_target_fpr(model_dir, data_dir, tmp_path):
    out = tmp_path / "scores"
    assert _score(model_dir, data_dir / "normal.csv", out) == 0
    flags = pd.read_parquet(out / "flags")
    codes = pd.read_parquet(out / "codes")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_read"] == 2000
    assert summary["rows_scored"] == len(flags) == len(codes) == 2000
    assert summary["rows_dead_lettered"] == 0
    assert set(flags.record_id) == set(codes.record_id)
    # held-out normal data: the flagged fraction is near scoring.target_fpr = 0.05
    assert 0.015 <= flags.is_anomaly.mean() <= 0.10
    assert flags.p_value.between(0, 1).all()
    assert (out / "config.yaml").exists()
    assert not list(out.glob(".staging-*"))


def test_scores_rank_injected_anomalies_above_normal_records(model_dir, data_dir, tmp_path):
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "scores"
    assert _score(model_dir, data_dir / "mixed.csv", out) == 0
    flags = pd.read_parquet(out / "flags")
    assert roc_auc_score(flags["label"].astype(int), flags["score"]) > 0.85
    # Each injected anomaly breaks a relation between these columns (a price that does not fit
    # its region may be blamed on either); the unrelated tier and is_weekend never lead.
    broken = {"load", "temperature", "power", "price", "latency_ms", "region"}
    for _, top in flags.sort_values("score").iloc[-10:].iterrows():
        assert top.top_feature_1 in broken
        assert top.top_contribution_1 >= top.top_contribution_2 >= top.top_contribution_3


def test_scores_are_deterministic_and_ignore_column_order(model_dir, data_dir, tmp_path):
    frame = pd.read_csv(data_dir / "normal.csv").head(300)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame[frame.columns[::-1]].to_parquet(tmp_path / "b.parquet", index=False)
    assert _score(model_dir, tmp_path / "a.csv", tmp_path / "out_a") == 0
    assert _score(model_dir, tmp_path / "b.parquet", tmp_path / "out_b") == 0
    a = pd.read_parquet(tmp_path / "out_a" / "flags").set_index("record_id").sort_index()
    b = pd.read_parquet(tmp_path / "out_b" / "flags").set_index("record_id").sort_index()
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5)


def test_decode_rebuilds_records_close_to_the_originals(model_dir, data_dir, tmp_path):
    assert _score(model_dir, data_dir / "train.csv", tmp_path / "s") == 0
    assert main(["decode", "--model", str(model_dir), "--input", str(tmp_path / "s" / "codes"),
                 "--output", str(tmp_path / "d")]) == 0  # fmt: skip
    decoded = pd.read_parquet(tmp_path / "d").set_index(
        "id"
    )  # decode restores the id column by name
    original = pd.read_csv(data_dir / "train.csv").set_index("id").loc[decoded.index]
    for column in ("load", "power", "temperature"):
        error = (decoded[column] - original[column]).abs().median()
        assert error < 0.35 * original[column].std(), column
    seen = original["region"].notna()
    accuracy = (decoded.loc[seen, "region"] == original.loc[seen, "region"]).mean()
    assert accuracy > 0.5  # the majority class alone is 0.3
    assert decoded["is_weekend"].dropna().isin([0, 1]).all()


def test_bad_rows_go_to_dead_letters_and_the_rest_is_scored(model_dir, data_dir, tmp_path):
    lines = (data_dir / "normal.csv").read_text().splitlines()[:101]
    width = lines[0].count(",") + 1
    bad = [
        "x1,not-a-number" + ",1" * (width - 2),  # text in the numeric 'load' column
        "x2,1,2",  # wrong number of fields
        "x3,inf" + ",1" * (width - 2),
    ]
    path = tmp_path / "batch.csv"
    path.write_text("\n".join(lines + bad) + "\n")
    out = tmp_path / "out"
    assert _score(model_dir, path, out) == 0
    dead = pd.read_parquet(out / "dead_letter").set_index("raw")
    assert set(dead.reason) == {"not_a_number", "column_count", "non_finite"}
    assert dead.loc[bad[0], "field"] == "load"
    flags = pd.read_parquet(out / "flags")
    assert len(flags) == 100
    assert len(flags) + len(dead) == len(lines) - 1 + len(bad)


def test_schema_violation_fails_the_job_when_configured(model_dir, data_dir, tmp_path):
    frame = pd.read_csv(data_dir / "normal.csv").head(200)
    frame["region"] = "mars"  # every value outside the training domain
    frame.to_csv(tmp_path / "drift.csv", index=False)
    out = tmp_path / "out"
    code = _score(model_dir, tmp_path / "drift.csv", out, "--set", "schema.on_anomaly=fail")
    assert code == EXIT_VALIDATION
    assert not (out / "flags").exists()
    assert _score(model_dir, tmp_path / "drift.csv", out) == 0  # warn (default) still scores
    assert "region" in (out / "validation_report.json").read_text()


def test_tampered_bundle_is_refused(model_dir, data_dir, tmp_path, capsys):
    copy = tmp_path / "bundle"
    copy.mkdir()
    for part in model_dir.iterdir():
        (copy / part.name).write_bytes(part.read_bytes())
    calibration = json.loads((copy / "calibration.json").read_text())
    calibration["threshold"] = 1e9
    (copy / "calibration.json").write_text(json.dumps(calibration))
    assert _score(copy, data_dir / "normal.csv", tmp_path / "out") == EXIT_BAD_INPUT
    assert "calibration.json" in capsys.readouterr().err


def test_input_missing_a_model_column_is_refused(model_dir, data_dir, tmp_path, capsys):
    frame = pd.read_csv(data_dir / "normal.csv").head(50).drop(columns=["power"])
    frame.to_csv(tmp_path / "narrow.csv", index=False)
    assert _score(model_dir, tmp_path / "narrow.csv", tmp_path / "out") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "power" in err and "narrow.csv" in err


def test_config_errors_name_the_key(data_dir, tmp_path, capsys):
    args = ["train", "--input", str(data_dir / "train.csv"), "--output", str(tmp_path / "m")]
    assert main(args + ["--set", "model.latent_dimm=4"]) == EXIT_BAD_INPUT
    assert "model.latent_dimm" in capsys.readouterr().err
    assert main(args + ["--set", "train.epochs=many"]) == EXIT_BAD_INPUT
    assert "train.epochs" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "score", "decode", "validate", "run", "demo"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--set" in capsys.readouterr().out


@pytest.mark.parametrize("resident", [False, True], ids=["streamed", "device_resident"])
def test_train_and_score_on_the_jax_backend(data_dir, tmp_path, resident):
    """The same CLI job on KERAS_BACKEND=jax (a subprocess: the backend is fixed at import),
    with the rows streamed from the shards or held in device memory (train.device_resident)."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    model = tmp_path / "jax_model"
    train = [sys.executable, "-m", "pipeline.cli", "train", "--input",
             str(data_dir / "train.csv"), "--output", str(model)] + TRAIN_SETTINGS  # fmt: skip
    train = [a if a != "train.epochs=30" else "train.epochs=3" for a in train]
    train += ["--set", f"train.device_resident={str(resident).lower()}"]
    done = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "elbo=" in done.stdout
    score = [sys.executable, "-m", "pipeline.cli", "score", "--model", str(model), "--input",
             str(data_dir / "normal.csv"), "--output", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(score, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    flags = pd.read_parquet(tmp_path / "out" / "flags")
    assert len(flags) == 2000
    assert 0 < flags["is_anomaly"].mean() < 0.2  # a trained model, not an untrained one


def test_device_resident_training_refuses_tensorflow(data_dir, tmp_path, capsys):
    args = ["train", "--input", str(data_dir / "train.csv"), "--output", str(tmp_path / "m")]
    args += TRAIN_SETTINGS + ["--set", "train.device_resident=true"]
    assert main(args) == 2
    assert "train.device_resident needs the JAX backend" in capsys.readouterr().err


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
