"""The scheduled `run` job, `validate`, curated schemas and incomplete bundles, via the CLI."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline.cli import EXIT_BAD_INPUT, EXIT_VALIDATION, main
from pipeline.features.tabular_encoding import TabularEncoding
from tests.conftest import TRAIN_SETTINGS

QUICK = [a if a != "train.epochs=30" else "train.epochs=2" for a in TRAIN_SETTINGS]


def test_run_uses_an_existing_model_and_writes_scores(model_dir, data_dir, tmp_path, capsys):
    code = main(["run", "--input", str(data_dir / "normal.csv"), "--output", str(tmp_path),
                 "--model", str(model_dir)])  # fmt: skip
    assert code == 0
    assert "using the model bundle" in capsys.readouterr().out
    summary = json.loads((tmp_path / "scores" / "summary.json").read_text())
    assert summary["rows_read"] == summary["rows_scored"] == 2000


def test_run_trains_when_there_is_no_model(data_dir, tmp_path, capsys):
    args = ["run", "--input", str(data_dir / "mixed.csv"), "--train-input",
            str(data_dir / "normal.csv"), "--output", str(tmp_path)] + QUICK  # fmt: skip
    assert main(args) == 0
    assert "no model bundle yet: training" in capsys.readouterr().out
    assert (tmp_path / "model" / "manifest.json").exists()
    assert len(pd.read_parquet(tmp_path / "scores" / "flags")) == 1000


def test_validate_reports_schema_anomalies_and_fails_by_config(model_dir, data_dir, tmp_path):
    frame = pd.read_csv(data_dir / "normal.csv").head(300)
    assert main(["validate", "--model", str(model_dir), "--input",
                 str(data_dir / "normal.csv")]) == 0  # fmt: skip
    frame["tier"] = "platinum"
    frame.to_csv(tmp_path / "drift.csv", index=False)
    report_dir = tmp_path / "report"
    args = ["validate", "--model", str(model_dir), "--input", str(tmp_path / "drift.csv"),
            "--output", str(report_dir)]  # fmt: skip
    assert main(args) == 0  # on_anomaly: warn (the default) reports but does not fail
    assert "tier" in (report_dir / "validation_report.json").read_text()
    assert (report_dir / "statistics.pb").exists()
    assert main(args + ["--set", "schema.on_anomaly=fail"]) == EXIT_VALIDATION


def test_training_with_a_curated_schema_keeps_its_column_kinds(model_dir, data_dir, tmp_path):
    schema = tmp_path / "schema.pbtxt"
    text = (model_dir / "schema.pbtxt").read_text()
    schema.write_text(text)
    out = tmp_path / "model"
    args = ["train", "--input", str(data_dir / "normal.csv"), "--output", str(out),
            "--set", f"schema.schema_file={schema}"] + QUICK  # fmt: skip
    assert main(args) == 0
    curated = TabularEncoding.from_json((out / "encoding.json").read_text())
    inferred = TabularEncoding.from_json((model_dir / "encoding.json").read_text())
    assert curated.kinds == inferred.kinds
    assert (out / "schema.pbtxt").read_text() == text


def test_bundle_missing_a_part_is_refused(model_dir, data_dir, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(model_dir, copy)
    (copy / "encoding.json").unlink()
    args = ["score", "--model", str(copy), "--input", str(data_dir / "normal.csv"),
            "--output", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == EXIT_BAD_INPUT
    assert "missing its part encoding.json" in capsys.readouterr().err
    (copy / "manifest.json").unlink()
    assert main(args) == EXIT_BAD_INPUT
    assert "manifest.json is missing" in capsys.readouterr().err


def test_drift_is_measured_per_feature_and_fails_by_config(model_dir, data_dir, tmp_path):
    frame = pd.read_csv(data_dir / "normal.csv").head(1000)
    frame["load"] = frame["load"] * 3  # the load distribution moves; relations break too
    frame.to_csv(tmp_path / "shifted.csv", index=False)
    out = tmp_path / "out"
    args = ["score", "--model", str(model_dir), "--input", str(tmp_path / "shifted.csv"),
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0  # on_drift: warn (the default)
    report = json.loads((out / "validation_report.json").read_text())
    measured = {row["feature"]: row for row in report["drift"]}
    assert (
        measured["load"]["drifted"] and measured["load"]["measure"] == "jensen_shannon_divergence"
    )
    assert measured["region"]["measure"] == "l_infty" and not measured["region"]["drifted"]
    summary = json.loads((out / "summary.json").read_text())
    assert "load" in summary["drifted_features"]
    assert "far above" in summary["flag_rate_alarm"]
    assert main(args + ["--set", "schema.on_drift=fail"]) == EXIT_VALIDATION


def test_normal_batch_raises_no_drift_or_flag_rate_alarm(model_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    args = ["score", "--model", str(model_dir), "--input", str(data_dir / "normal.csv"),
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drifted_features"] == []
    assert summary["flag_rate_alarm"] is None


def test_bundle_config_with_a_retired_key_still_scores(model_dir, data_dir, tmp_path, capsys):
    """A bundle written by a version with a config key this one dropped is still usable."""
    from pipeline.artifacts.bundle import write_manifest

    copy = tmp_path / "bundle"
    shutil.copytree(model_dir, copy)
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("train:\n", "train:\n  shard_rows: 65536\n", 1))
    write_manifest(str(copy), "tabular")  # a consistent bundle, as that version wrote it
    args = ["score", "--model", str(copy), "--input", str(data_dir / "normal.csv"),
            "--output", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    assert "ignoring retired config key train.shard_rows" in capsys.readouterr().out


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
