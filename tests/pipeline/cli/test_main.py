"""main(): config errors become exit 2 with one `vaepipe <cmd>: error:` line."""

from __future__ import annotations

from pipeline.cli.commands import EXIT_BAD_INPUT
from pipeline.cli.main import main


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_bad_setting_is_exit_2_with_one_line(tmp_path, capsys):
    argv = ["train", "--input", "x.csv", "--output", str(tmp_path / "m")]
    code = main([*argv, "--set", "model.latent_dim=0"])
    assert code == EXIT_BAD_INPUT
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("vaepipe train: error: ")
    assert "latent_dim" in lines[0]


def test_an_unknown_set_key_names_the_key(tmp_path, capsys):
    argv = ["train", "--input", "x.csv", "--output", str(tmp_path / "m")]
    code = main([*argv, "--set", "model.no_such_key=1"])
    assert code == EXIT_BAD_INPUT
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("vaepipe train: error: ")
    assert "no_such_key" in lines[0]


def test_a_missing_model_bundle_is_exit_2(tmp_path, capsys):
    argv = ["score", "--model", str(tmp_path / "none"), "--input", "x.csv"]
    code = main([*argv, "--output", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    lines = _error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("vaepipe score: error: ")
