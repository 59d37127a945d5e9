"""`vaepipe compress` / `decompress` as commands: the parser's arguments, `--set compress.*`
read through the config's `compress` section into the archive, the exit codes."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from configs import ConfigError
from pipeline.archive import format as fmt
from pipeline.cli.archive_commands import add_archive_parsers, cmd_compress, cmd_decompress


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_archive_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_the_commands_take_model_input_output_and_repeated_sets():
    sets = ["--set", "compress.relative_tolerance=0.01", "--set", "data.chunk_rows=9"]
    args = parse("compress", "--model", "m", "--input", "t*.csv", "--output", "a", *sets)
    assert (args.model, args.input, args.output) == ("m", "t*.csv", "a")
    assert args.set == ["compress.relative_tolerance=0.01", "data.chunk_rows=9"]
    assert args.config == []
    args = parse("decompress", "--model", "m", "--input", "a", "--output", "t")
    assert (args.command, args.input, args.output) == ("decompress", "a", "t")
    with pytest.raises(SystemExit):
        parse("compress", "--model", "m", "--input", "x")  # no --output


@pytest.mark.slow
def test_compress_settings_travel_through_the_config(model_dir, data_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.read_csv(data_dir / "normal.csv", dtype=str).head(120).to_csv(source, index=False)
    archive = tmp_path / "archive"
    args = parse("compress", "--model", str(model_dir), "--input", str(source), "--output",
                 str(archive), "--set", "compress.relative_tolerance=5e-2",
                 "--set", "compress.column_tolerances={load: {absolute_tolerance: 1}}")  # fmt: skip
    assert cmd_compress(args, []) == 0
    info = json.loads((archive / fmt.ARCHIVE_FILE).read_text())
    assert info["settings"]["relative_tolerance"] == 0.05
    assert info["settings"]["column_tolerances"] == {"load": {"absolute_tolerance": 1}}
    assert "relative_tolerance: 0.05" in (archive / fmt.CONFIG).read_text()
    out = tmp_path / "table"
    assert cmd_decompress(parse("decompress", "--model", str(model_dir), "--input",
                                str(archive), "--output", str(out)), []) == 0  # fmt: skip
    assert len(pd.read_parquet(out)) == 120
    bad = parse("compress", "--model", str(model_dir), "--input", str(source), "--output",
                str(tmp_path / "b"), "--set", "compress.relative_tolerance=2")  # fmt: skip
    with pytest.raises(ConfigError, match="compress.relative_tolerance must be"):
        cmd_compress(bad, [])
