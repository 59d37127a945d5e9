"""The report / sample / sweep sub-parsers, and sample's refusal of --rows 0."""

from __future__ import annotations

import pytest

from pipeline.cli.commands import EXIT_BAD_INPUT
from pipeline.cli.main import main
from pipeline.cli.parser import build_parser


def _parse(argv):
    args, rest = build_parser().parse_known_args(argv)
    return args, rest


def test_report_flags_and_defaults():
    args, rest = _parse(["report", "--model", "m", "--scores", "s", "--sample-rows", "5"])
    assert (args.command, args.model, args.scores, args.sample_rows) == ("report", "m", "s", 5)
    assert args.output is None and args.samples is None and args.seed == 0
    assert rest == []


def test_sample_flags():
    args, _ = _parse(["sample", "--model", "m", "--rows", "12", "--output", "o", "--most-likely"])
    assert (args.rows, args.output, args.most_likely, args.seed) == (12, "o", True, 0)


def test_sample_needs_rows():
    with pytest.raises(SystemExit):
        _parse(["sample", "--model", "m", "--output", "o"])


def test_sweep_flags():
    argv = ["sweep", "--input", "t.csv", "--output", "o", "--set", "model.beta=0.1,1"]
    args, _ = _parse([*argv, "--set", "train.epochs=2", "--label-column", "y"])
    assert args.set == ["model.beta=0.1,1", "train.epochs=2"]
    assert (args.label_column, args.eval_input, args.config) == ("y", None, [])


def test_sample_refuses_zero_rows_with_a_message(tmp_path, capsys):
    code = main(["sample", "--model", str(tmp_path), "--rows", "0", "--output", str(tmp_path)])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err == (
        "vaepipe sample: error: --rows must be a positive number of records. Received: 0"
    )
