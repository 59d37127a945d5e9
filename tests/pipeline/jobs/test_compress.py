"""`vaepipe compress` / `decompress` end to end on the DirectRunner: the bound for every record,
ids and excluded columns exact, input order restored file by file, row accounting, dead
letters, and refusals (another model, an incomplete archive)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs import ConfigError
from configs.loader import load_config
from configs.schema import CompressConfig
from pipeline.artifacts.bundle import DICTIONARY_FILE
from pipeline.cli import main
from pipeline.cli.archive_commands import add_archive_parsers, cmd_compress, cmd_decompress
from pipeline.core.errors import BundleError

NUMBERS = ["load", "temperature", "power", "price", "latency_ms"]


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_archive_parsers(parser.add_subparsers(dest="command"))
    args, beam_args = parser.parse_known_args(list(argv))
    handler = cmd_compress if args.command == "compress" else cmd_decompress
    return handler(args, beam_args)


def restored(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def typed_numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The text's doubles, correctly rounded (pd.to_numeric is not: 1 ulp off at times)."""
    return np.array([float(v) if v.strip() else np.nan for v in frame[name]])


@pytest.fixture(scope="module")
def plain_model(data_dir, tmp_path_factory) -> Path:
    """A small model without data.id_column (ids travel as an excluded column)."""
    out = tmp_path_factory.mktemp("plain") / "bundle"
    code = main(["train", "--input", str(data_dir / "train.csv"), "--output", str(out),
                 "--set", "data.exclude_columns=[label,id]", "--set", "train.epochs=3",
                 "--set", "model.hidden_units=[16]",
                 "--set", "compress.keep_training_rows=0"])  # fmt: skip
    assert code == 0
    assert not (out / DICTIONARY_FILE).exists()  # a bundle that keeps no raw records
    return out


@pytest.mark.slow
def test_round_trip_keeps_the_bound_ids_order_and_accounting(model_dir, data_dir, tmp_path):
    archive, table = tmp_path / "archive", tmp_path / "table"
    inputs = str(data_dir / "[mn]*.csv")  # mixed.csv then normal.csv
    assert run("compress", "--model", str(model_dir), "--input", inputs, "--output",
               str(archive), "--set", "compress.relative_tolerance=0.01",
               "--set", "data.chunk_rows=300") == 0  # fmt: skip
    summary = json.loads((archive / "summary.json").read_text())
    assert (
        summary["rows_read"] == 3000 == summary["rows_compressed"] + summary["rows_dead_lettered"]
    )
    assert summary["blocks"] >= 10 and summary["bits_per_record"]["total"] > 0
    assert run("decompress", "--model", str(model_dir), "--input", str(archive),
               "--output", str(table)) == 0  # fmt: skip
    out = restored(table)
    original = pd.concat(
        [
            pd.read_csv(data_dir / n, dtype=str, keep_default_na=False)
            for n in ("mixed.csv", "normal.csv")
        ],
        ignore_index=True,
    )
    kept = original[original["id"].isin(out["id"])].reset_index(drop=True)
    assert out["id"].tolist() == kept["id"].tolist()  # input order, file by file
    assert len(out) == summary["rows_compressed"]
    assert list(out.columns) == list(original.columns)
    for name in NUMBERS:
        x, y = typed_numbers(kept, name), out[name].to_numpy(dtype=np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        seen = ~np.isnan(x)
        assert np.all(np.abs(y[seen] - x[seen]) <= 0.01 * np.abs(x[seen])), name
    for name in ("region", "tier"):
        assert out[name].fillna("").tolist() == kept[name].tolist(), name
    assert out["label"].astype(str).tolist() == kept["label"].tolist()  # excluded: exact
    assert str(out["is_weekend"].dtype) in ("int64", "Int64")


@pytest.mark.slow
def test_lossless_without_ids_restores_order_and_bits(plain_model, data_dir, tmp_path):
    archive, table = tmp_path / "archive", tmp_path / "table"
    source = tmp_path / "in"
    source.mkdir()
    frame = pd.read_csv(data_dir / "normal.csv", dtype=str, keep_default_na=False).head(900)
    frame.loc[6, "price"] = ""  # missing stays missing
    frame.loc[7, "region"] = "atlantis"  # an unseen category
    frame.iloc[:450].to_csv(source / "a.csv", index=False)
    frame.iloc[450:].to_csv(source / "b.csv", index=False)
    # A dead letter, named. In a file of its own: a column holding text is parsed by pandas,
    # which is not correctly rounded (a 1-ulp difference from the text's double).
    bad = frame.iloc[:1].assign(load="not a number")
    bad.to_csv(source / "c.csv", index=False)
    assert run("compress", "--model", str(plain_model), "--input", str(source / "*.csv"),
               "--output", str(archive), "--set", "data.chunk_rows=100") == 0  # fmt: skip
    summary = json.loads((archive / "summary.json").read_text())
    assert (summary["rows_read"], summary["rows_dead_lettered"]) == (901, 1)
    dead = pd.read_parquet(archive / "dead_letter")
    assert dead[["reason", "field"]].values.tolist() == [["not_a_number", "load"]]
    assert run("decompress", "--model", str(plain_model), "--input", str(archive),
               "--output", str(table)) == 0  # fmt: skip
    out = restored(table)
    kept = frame
    assert out["id"].tolist() == kept["id"].tolist()
    for name in NUMBERS:
        x, y = typed_numbers(kept, name), out[name].to_numpy(dtype=np.float64)
        seen = ~np.isnan(x)
        assert np.array_equal(seen, ~np.isnan(y)), name
        assert np.array_equal(x[seen].view(np.int64), y[seen].view(np.int64)), name  # bits
    assert out.loc[6, "price"] is None or np.isnan(out.loc[6, "price"])
    assert out.loc[7, "region"] == "atlantis"


@pytest.mark.slow
def test_decompress_refuses_another_model_and_an_incomplete_archive(
    model_dir, plain_model, data_dir, tmp_path
):
    archive = tmp_path / "archive"
    assert run("compress", "--model", str(model_dir), "--input", str(data_dir / "mixed.csv"),
               "--output", str(archive)) == 0  # fmt: skip
    with pytest.raises(BundleError, match="coded with another model"):
        run("decompress", "--model", str(plain_model), "--input", str(archive),
            "--output", str(tmp_path / "t1"))  # fmt: skip
    broken = tmp_path / "broken"
    shutil.copytree(archive, broken)
    (broken / "summary.json").unlink()
    with pytest.raises(BundleError, match="not a complete vaepipe archive"):
        run("decompress", "--model", str(model_dir), "--input", str(broken),
            "--output", str(tmp_path / "t2"))  # fmt: skip


def test_the_archive_reads_the_configs_compress_section():
    config = load_config(
        [], ["compress.relative_tolerance=1e-2", "compress.absolute_tolerance=1e-3"]
    )
    assert config.compress == CompressConfig(absolute_tolerance=0.001, relative_tolerance=0.01)
    bound = load_config([], ["compress.column_tolerances={x: {relative_tolerance: 0.1}}"])
    assert bound.compress.bound("x") == (0.0, 0.1) and bound.compress.bound("y") == (0.0, 0.0)


@pytest.mark.parametrize(
    "override,message",
    [
        ("compress.relative_tolerance=1.5", r"compress.relative_tolerance must be \[0, 1\)"),
        ("compress.absolute_tolerance=-1", "compress.absolute_tolerance must be >= 0"),
        ("compress.tolerance=0.1", "tolerance"),
        ("compress.column_tolerances={x: {rel: 1}}", "compress.column_tolerances.x must be"),
        ("compress.column_tolerances={x: {relative_tolerance: 2}}", r"relative_tolerance must"),
        ("compress.latent_step=0", "compress.latent_step must be in"),
        ("compress.latent_search=2", "compress.latent_search must be of type bool"),
        ("compress.keep_training_rows=-1", "compress.keep_training_rows must be a whole"),
        ("compress.dictionary=''", "compress.dictionary must be `training`"),
    ],
)
def test_bad_compress_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([], [override])


def test_per_column_bounds_must_name_numeric_columns():
    settings = CompressConfig(column_tolerances={"nope": {"absolute_tolerance": 1}})
    settings.validate()
    with pytest.raises(ConfigError, match=r"does not code as numbers: \['nope'\]"):
        settings.check_columns(["load", "price"])
