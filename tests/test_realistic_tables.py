"""A realistic table through the CLI: lognormal amounts, normal readings, a correlated pair,
Poisson counts, a 4-value category, a true/false column, ISO timestamps, free text, a
10,000-value user id and an all-missing column, 20,000 rows (pipeline/cli/demo_realistic.py).

A fresh batch from the same distribution must flag near the 1% target: before, the
timestamps, notes and user ids became 1,000-value vocabularies built from all rows
(calibration rows included), so calibration records found their values and fresh ones did
not, and 1 record in 20,000 was flagged.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import EXIT_BAD_INPUT, main
from pipeline.cli.demo_realistic import realistic_table

pytestmark = pytest.mark.slow

ROWS = 20_000


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic")
    train = realistic_table(ROWS, seed=1)
    train["gone"] = np.nan  # a column never filled in training
    train.to_csv(root / "train.csv", index=False)
    model = root / "model"
    args = ["train", "--input", str(root / "train.csv"), "--output", str(model),
            "--set", "data.id_column=id"]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(args)
    return root, model, code, printed.getvalue()


def _flags(out) -> pd.DataFrame:
    return pd.read_parquet(out / "flags")


def test_training_says_what_it_left_out(trained):
    _, model, code, printed = trained
    assert code == 0
    for name in ("ts", "note", "user", "gone"):
        [line] = [x for x in printed.splitlines() if f"column {name!r} left out" in x]
        assert line.strip().startswith("WARNING")
    columns = json.loads((model / "training_report.json").read_text())["columns"]
    decided = {name: (d["kind"], d["decision"]) for name, d in columns.items()}
    assert decided == {
        "amount": ("numeric", "modelled"),
        "reading": ("numeric", "modelled"),
        "pair_a": ("numeric", "modelled"),
        "pair_b": ("numeric", "modelled"),
        "count": ("numeric", "modelled"),
        "channel": ("categorical", "modelled"),
        "verified": ("boolean", "modelled"),
        "ts": ("timestamp", "left out"),
        "note": ("identifier", "left out"),
        "user": ("identifier", "left out"),
        "gone": ("empty", "left out"),
    }
    calibration = json.loads((model / "training_report.json").read_text())["calibration"]
    assert calibration["rows"] > 1500 and calibration["warning"] is None


def test_a_fresh_batch_flags_near_the_target_and_does_not_drift(trained, tmp_path):
    root, model, _, _ = trained
    fresh = realistic_table(ROWS, seed=2, start="2024-04-01")  # later, and without `gone`
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    out = tmp_path / "out"
    args = ["score", "--model", str(model), "--input", str(tmp_path / "fresh.csv"),
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    rate = _flags(out)["is_anomaly"].mean()
    assert 0.005 <= rate <= 0.02, rate
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_scored"] == ROWS
    assert summary["drifted_features"] == [] and summary["flag_rate_alarm"] is None


def test_other_boolean_spellings_and_a_filled_in_empty_column_score_as_normal(trained, tmp_path):
    _, model, _, _ = trained
    batch = realistic_table(4000, seed=3)
    batch["verified"] = np.where(batch["verified"] == "true", "True", "False")  # as pandas writes
    digits = np.arange(4000) >= 2000
    batch.loc[digits, "verified"] = np.where(batch.loc[digits, "verified"] == "True", "1", "0")
    batch["gone"] = np.random.default_rng(4).normal(size=4000)  # values the model never saw
    batch.to_csv(tmp_path / "batch.csv", index=False)
    out = tmp_path / "out"
    args = ["score", "--model", str(model), "--input", str(tmp_path / "batch.csv"),
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    flags = _flags(out).set_index("record_id").loc[batch["id"]]
    words, numbers = flags["is_anomaly"].to_numpy()[~digits], flags["is_anomaly"].to_numpy()[digits]
    assert words.mean() <= 0.03 and numbers.mean() <= 0.03, (words.mean(), numbers.mean())


def test_a_small_clean_batch_passes_validation_with_drift_failing(trained, tmp_path):
    _, model, _, _ = trained
    realistic_table(100, seed=5).to_csv(tmp_path / "small.csv", index=False)
    args = ["validate", "--model", str(model), "--input", str(tmp_path / "small.csv"),
            "--set", "schema.on_drift=fail", "--output", str(tmp_path / "report")]  # fmt: skip
    assert main(args) == 0
    report = json.loads((tmp_path / "report" / "validation_report.json").read_text())
    assert report["drift"] and not any(row["drifted"] for row in report["drift"])


def test_a_five_row_training_set_is_refused_saying_how_many_rows_are_needed(tmp_path, capsys):
    realistic_table(5, seed=6).to_csv(tmp_path / "tiny.csv", index=False)
    args = ["train", "--input", str(tmp_path / "tiny.csv"), "--output", str(tmp_path / "m"),
            "--set", "data.id_column=id"]  # fmt: skip
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "at least 10 held-out rows" in err and "give at least 50 rows" in err
    assert not (tmp_path / "m" / "_work").exists()
