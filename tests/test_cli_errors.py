"""What a new user ran into (issues 6-17): each mistake is one line naming cause and fix with
exit 2 and no traceback; scoring keeps the model's settings; outputs stay apart from the model;
dry runs, concurrent jobs, duplicate ids and decoding behave as documented."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from configs import builtin_config_path
from configs.schema import DataConfig
from pipeline.artifacts.bundle import COLUMNS_FILE, load_bundle, record_columns, write_manifest
from pipeline.cli import EXIT_BAD_INPUT, main
from pipeline.features.column_types import ProfileColumns
from pipeline.scoring.calibration import threshold_for
from pipeline.scoring.outputs import CODE_METADATA_KEY, MODEL_FINGERPRINT
from pipeline.sinks.publish import CURRENT, LEASE_FILE, RUNS
from pipeline.sources.files import file_chunks
from tests.test_dataflow import DATAFLOW


def score_args(model: Path, batch: Path, out: Path, *extra: str) -> list[str]:
    return ["score", "--model", str(model), "--input", str(batch), "--output", str(out), *extra]


@pytest.fixture(scope="module")
def batch(data_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "batch.csv"
    pd.read_csv(data_dir / "normal.csv").head(200).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def scored(model_dir, batch, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scored") / "out"
    assert main(score_args(model_dir, batch, out)) == 0
    return out


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI; assert exit 2 with one stderr line and no traceback; return that line."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT, err
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


# ----------------------------------------------------------------------------- 13: one line


def test_an_output_that_is_an_existing_file(model_dir, batch, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    err = one_line_error(capsys, score_args(model_dir, batch, tmp_path / "taken"))
    assert "is an existing file: it must be a folder" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_decoding_the_flags_folder(model_dir, scored, tmp_path, capsys):
    argv = ["decode", "--model", str(model_dir), "--input", str(scored / "flags"),
            "--output", str(tmp_path / "d")]  # fmt: skip
    assert "not a codes file" in one_line_error(capsys, argv)


def test_a_folder_that_is_not_a_model(batch, tmp_path, capsys):
    err = one_line_error(capsys, score_args(tmp_path / "notabundle", batch, tmp_path / "o"))
    assert "notabundle is not a model bundle" in err and "manifest.json" in err


def test_a_wrong_id_column_or_an_empty_glob_at_training(data_dir, tmp_path, capsys):
    train = ["train", "--input", str(data_dir / "train.csv"), "--output", str(tmp_path / "m")]
    err = one_line_error(capsys, train + ["--set", "data.id_column=idd"])
    assert "data.id_column 'idd' is not a column of" in err
    err = one_line_error(capsys, train + ["--set", "data.exclude_columns=[lable]"])
    assert "data.exclude_columns" in err and "lable" in err
    nothing = ["train", "--input", str(tmp_path / "train-*.csv"), "--output", str(tmp_path / "m")]
    assert "no input files match" in one_line_error(capsys, nothing)
    assert not (tmp_path / "m").exists()


def test_a_semicolon_file_without_the_delimiter_setting(model_dir, data_dir, tmp_path, capsys):
    semi = tmp_path / "semi.csv"
    pd.read_csv(data_dir / "normal.csv").head(50).to_csv(semi, sep=";", index=False)
    err = one_line_error(capsys, score_args(model_dir, semi, tmp_path / "o"))
    assert "missing columns" in err and "data.csv_delimiter" in err and "';'" in err
    assert main(score_args(model_dir, semi, tmp_path / "o", "--set", "data.csv_delimiter=;")) == 0


def test_a_bad_activation_is_named_before_any_data_is_read(data_dir, tmp_path, capsys):
    started = time.monotonic()
    argv = ["train", "--input", str(data_dir / "train.csv"), "--output", str(tmp_path / "m"),
            "--set", "model.activation=relux"]  # fmt: skip
    err = one_line_error(capsys, argv)
    assert "model.activation" in err and "relux" in err
    assert "preparing data" not in capsys.readouterr().out
    assert time.monotonic() - started < 5


# -------------------------------------------------------- 6: the model's settings at scoring


def test_scoring_with_the_training_config_file_refuses_changed_settings(
    model_dir, batch, tmp_path, capsys
):
    tabular = str(builtin_config_path("tabular"))
    err = one_line_error(capsys, score_args(model_dir, batch, tmp_path / "o", "--config", tabular))
    assert "fixed at training" in err
    assert "data.id_column (trained: 'id'" in err and "data.exclude_columns" in err
    assert not (tmp_path / "o").exists()


def test_a_target_fpr_given_at_scoring_is_honoured(model_dir, batch, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(score_args(model_dir, batch, out, "--set", "scoring.target_fpr=0.3")) == 0
    assert "re-derived" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    bundle = load_bundle(str(model_dir), load_model=False)
    assert summary["target_fpr"] == 0.3
    assert summary["threshold"] == threshold_for(bundle.calibration_scores, 0.3)
    assert "re-derived" in summary["threshold_note"]
    flags = pd.read_parquet(out / "flags")
    assert (flags["is_anomaly"] == (flags["score"] > summary["threshold"])).all()
    assert summary["rows_flagged"] == int(flags["is_anomaly"].sum()) > 0


# ------------------------------------------------------------- 7: outputs apart from models


@pytest.mark.parametrize("command", ["score", "validate", "decode", "run"])
@pytest.mark.parametrize("where", ["same", "inside", "containing"])
def test_an_output_overlapping_the_model_is_refused(
    model_dir, scored, batch, tmp_path, capsys, command, where
):
    copy = tmp_path / "job" / "scores" / "model"
    shutil.copytree(model_dir, copy)
    output = {"same": copy, "inside": copy / "out", "containing": copy.parent}[where]
    if command == "run":  # run writes OUTPUT/scores: overlapping means that folder does
        output = {"same": copy, "inside": copy / "out", "containing": copy.parent.parent}[where]
    source = scored / "codes" if command == "decode" else batch
    argv = [command, "--input", str(source), "--output", str(output), "--model", str(copy)]
    before = sorted(p.name for p in copy.iterdir())
    assert "overlap" in one_line_error(capsys, argv)
    assert sorted(p.name for p in copy.iterdir()) == before
    load_bundle(str(copy), load_model=False)  # every part as trained


# ----------------------------------------------------------------------------- 8: dry runs


def test_a_dataflow_dry_run_exits_0_says_nothing_ran_and_leaves_nothing(
    model_dir, batch, tmp_path, capsys
):
    out = tmp_path / "out"
    assert main(score_args(model_dir, batch, out, *DATAFLOW)) == 0
    assert "nothing ran" in capsys.readouterr().out
    assert not out.exists() or not list(out.iterdir())


# ------------------------------------------------------------------- 9: one job per folder


def test_a_second_job_on_a_live_output_folder_is_refused(
    model_dir, scored, batch, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(scored, out)
    live = {
        "job_id": "other",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "heartbeat": time.time(),
    }  # fmt: skip  a running job's lease
    (out / LEASE_FILE).write_text(json.dumps(live))
    (out / ".staging-other").mkdir()  # its staging folder
    err = one_line_error(capsys, score_args(model_dir, batch, out))
    assert "in use by another vaepipe job" in err and "other" in err
    assert (out / ".staging-other").is_dir()  # the live job's staging folder was left alone

    live["heartbeat"] = time.time() - 3600  # an hour without a heartbeat: a dead job
    live["host"] = "another-machine"
    (out / LEASE_FILE).write_text(json.dumps(live))
    assert main(score_args(model_dir, batch, out)) == 0
    assert "left by an interrupted run" in capsys.readouterr().out
    assert not (out / ".staging-other").exists() and not (out / LEASE_FILE).exists()


# ------------------------------------------------------------- 10: publishing as a whole


def test_readers_find_the_current_run_whole_and_the_usual_paths_as_copies(scored):
    run_id = (scored / CURRENT).read_text().strip()
    summary = json.loads((scored / "summary.json").read_text())
    assert summary["run_id"] == run_id
    for name in ("flags", "codes", "dead_letter"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(scored / RUNS / run_id / name), pd.read_parquet(scored / name)
        )


# ---------------------------------------------------------------- 16: duplicate record ids


def test_duplicate_record_ids_are_reported(model_dir, batch, tmp_path, capsys):
    frame = pd.read_csv(batch)
    frame.loc[10:12, "id"] = frame.loc[0, "id"]  # one id 4 times
    frame.loc[20, "id"] = frame.loc[21, "id"]  # another twice
    frame.to_csv(tmp_path / "dups.csv", index=False)
    assert main(score_args(model_dir, tmp_path / "dups.csv", tmp_path / "o")) == 0
    assert "WARNING 2 record ids occur more than once" in capsys.readouterr().out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    expected = sorted(str(frame.loc[i, "id"]) for i in (0, 21))
    assert summary["duplicate_record_ids"] == {"ids": 2, "extra_rows": 4, "examples": expected}
    assert summary["rows_scored"] == 200  # each copy scored: reported, not dropped


# ----------------------------------------------------------------------- 11 and 17: decode


def test_decode_refuses_codes_of_another_model(model_dir, scored, tmp_path, capsys):
    codes = tmp_path / "codes"
    codes.mkdir()
    for part in (scored / "codes").glob("*.parquet"):
        table = pq.read_table(part)
        meta = json.loads(table.schema.metadata[CODE_METADATA_KEY])
        meta[MODEL_FINGERPRINT] = "0" * 64
        table = table.replace_schema_metadata({CODE_METADATA_KEY: json.dumps(meta).encode()})
        pq.write_table(table, codes / part.name)
    argv = [
        "decode",
        "--model",
        str(model_dir),
        "--input",
        str(codes),
        "--output",
        str(tmp_path / "d"),
    ]
    err = one_line_error(capsys, argv)
    assert "another model" in err and "0000000000000000" in err and str(model_dir) in err


def test_decode_reads_config_and_set(model_dir, scored, tmp_path, capsys):
    base = ["decode", "--model", str(model_dir), "--input", str(scored / "codes"),
            "--output", str(tmp_path / "d")]  # fmt: skip
    assert "config file not found" in one_line_error(capsys, base + ["--config", "missing.yaml"])
    assert "fixed at training" in one_line_error(capsys, base + ["--set", "model.latent_dim=2"])
    assert main(base + ["--set", "scoring.batch_size=64"]) == 0


def test_decode_restores_the_input_columns_of_a_bundle_that_records_them(
    model_dir, data_dir, scored, tmp_path
):
    """A bundle with record_columns.json (computed from training's column profiles as training will
    record it): decoded records have the id column's name, the input's column order and types."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    bundle = load_bundle(str(copy), load_model=False)
    profile = ProfileColumns(2)
    acc = profile.create_accumulator()
    for chunk, _ in file_chunks(str(data_dir / "train.csv"), DataConfig(id_column="id")):
        acc = profile.add_input(acc, chunk)
    columns = record_columns(profile.extract_output(acc), bundle.encoding.kinds, "id")
    (copy / COLUMNS_FILE).write_text(columns.to_json())
    write_manifest(str(copy), "tabular")

    out = tmp_path / "d"
    assert main(["decode", "--model", str(copy), "--input", str(scored / "codes"),
                 "--output", str(out)]) == 0  # fmt: skip
    decoded = pd.read_parquet(out)
    header = pd.read_csv(data_dir / "train.csv", nrows=0).columns.tolist()
    assert decoded.columns.tolist() == [c for c in header if c != "label"]  # label: excluded
    assert decoded["is_weekend"].dtype.kind in "iO" and decoded["region"].dtype == object
    before = pd.read_parquet(tmp_path / ".." / tmp_path.name / "d")  # same decoded records
    assert len(before) == 200 and set(before["id"]) == set(
        pd.read_parquet(scored / "codes").record_id
    )
    assert np.isfinite(decoded["load"]).all()


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
