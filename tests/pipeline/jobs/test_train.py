"""The training job: batch sizes for small train splits (train.min_steps_per_epoch), the
resume fingerprint of the input files, and the refusal of too few calibration rows."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from configs.schema import TrainConfig
from pipeline.jobs import train as train_job
from pipeline.jobs.train import MIN_BATCH_SIZE, effective_batch_size


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (100_000, 256),  # large splits keep train.batch_size
        (2_048, 256),  # exactly 8 steps at 256
        (2_049, 256),
        (1_000, 125),  # 8 steps of 125
        (196, 25),  # ADBench Ionosphere's train split: 8 steps instead of 1
        (50, MIN_BATCH_SIZE),  # never below 16 rows: 4 steps
    ],
)
def test_small_train_splits_get_smaller_batches_for_enough_steps(rows, expected):
    train = TrainConfig(batch_size=256, min_steps_per_epoch=8)
    batch = effective_batch_size(rows, train)
    assert batch == expected
    if expected > MIN_BATCH_SIZE:
        assert math.ceil(rows / batch) >= 8


def test_one_step_per_epoch_keeps_the_configured_batch_and_a_small_batch_is_kept():
    assert effective_batch_size(196, TrainConfig(batch_size=256, min_steps_per_epoch=1)) == 196
    assert effective_batch_size(100, TrainConfig(batch_size=8, min_steps_per_epoch=8)) == 8


# ------------------------------------------------ resumed runs see the files, not the pattern


def test_the_fingerprint_changes_with_the_files_content_not_only_their_names(tmp_path):
    config = load_config([], [])
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    before = train_job._fingerprint(str(data), config)
    assert train_job._fingerprint(str(data), config) == before
    stat = data.stat()
    data.write_text("a,b\n3,4\n")  # same size, and the same modification time put back
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train_job._fingerprint(str(data), config) != before
    (tmp_path / "more.csv").write_text("a,b\n5,6\n")
    assert train_job._fingerprint(str(tmp_path / "*.csv"), config) != train_job._fingerprint(
        str(data), config
    )
    [entry] = train_job.input_files(str(data))
    assert entry["path"] == str(data) and entry["size"] == 8 and "sha256" in entry


def test_a_folder_input_is_fingerprinted_by_the_files_below_it(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"1")
    files = train_job.input_files(str(tmp_path))
    assert [os.path.basename(f["path"]) for f in files] == ["a.png"]
    assert train_job.input_files("bq://project.dataset.table") == []


@pytest.mark.parametrize(
    ("calibration", "validation", "refused"),
    [(0, 0, True), (4, 5, True), (9, 0, True), (4, 6, False), (0, 10, False), (10, 0, False)],
)
def test_too_few_held_out_rows_are_refused_saying_how_many_are_needed(
    calibration, validation, refused
):
    config = load_config([], [])
    rows = {"train": 100, "validation": validation, "calibration": calibration}
    if not refused:
        train_job.check_rows(rows, config)
        return
    with pytest.raises(ValueError, match=r"at least 10 held-out rows .* give at least 50 rows"):
        train_job.check_rows(rows, config)


def test_a_small_calibration_split_is_joined_by_the_validation_split():
    assert train_job.calibration_splits({"calibration": 10, "validation": 3}) == ("calibration",)
    small = {"calibration": 4, "validation": 10}
    assert train_job.calibration_splits(small) == ("calibration", "validation")
    line = train_job.calibration_line(small, ("calibration", "validation"))
    assert line.startswith("14 held-out rows") and "4 < 10" in line


def test_a_small_table_trains_and_calibrates_on_both_held_out_splits(tmp_path):
    data, model = tmp_path / "train.csv", tmp_path / "model"
    _rows(70, seed=3).to_csv(data, index=False)
    lines: list[str] = []
    train_job.train(str(data), str(model), load_config([], QUICK), echo=lines.append)
    report = json.loads((model / "training_report.json").read_text())
    rows, quality = report["rows"], report["calibration"]
    held_out = quality["held_out_splits"]
    assert quality["rows"] == sum(rows[split] for split in held_out) >= 10
    assert (held_out == ["calibration", "validation"]) == (rows["calibration"] < 10)


def test_calibration_quality_states_the_resolution_and_an_interval():
    config = load_config([], ["scoring.target_fpr=0.01"])
    small = train_job.calibration_quality(np.arange(200.0), 197.5, config)
    assert small["p_value_resolution"] == pytest.approx(1 / 200)
    assert small["scores_above_threshold"] == 2
    low, high = small["fpr_90_interval"]
    assert low < 0.01 < high and high > 0.02  # 2 scores above: a wide band
    assert small["expected_fpr"] == pytest.approx(3 / 201)
    assert "200 calibration rows" in small["warning"] and "1/200" in small["warning"]
    large = train_job.calibration_quality(np.arange(5000.0), 4950.0, config)
    assert large["warning"] is None
    assert large["fpr_90_interval"][0] > 0.007 and large["fpr_90_interval"][1] < 0.014


QUICK = [
    "data.id_column=id",
    "train.epochs=1",
    "model.hidden_units=[8]",
    "model.latent_dim=2",
    "train.batch_size=64",
]


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"{seed}-{i}" for i in range(n)], "x": rng.normal(size=n)})


def test_a_refused_training_leaves_nothing_and_a_changed_input_is_prepared_afresh(tmp_path):
    data, model = tmp_path / "train.csv", tmp_path / "model"
    config = load_config([], QUICK)
    _rows(5, seed=1).to_csv(data, index=False)
    with pytest.raises(ValueError, match="not enough rows to train"):
        train_job.train(str(data), str(model), config, echo=lambda _: None)
    assert not (model / "_work").exists()  # nothing stale for the next run to resume

    _rows(400, seed=2).to_csv(data, index=False)
    lines: list[str] = []
    train_job.train(str(data), str(model), config, echo=lines.append)
    report = json.loads((model / "training_report.json").read_text())
    assert sum(report["rows"].values()) == 400
    assert report["columns"]["x"]["decision"] == "modelled"
    assert not any("resuming" in line for line in lines)
