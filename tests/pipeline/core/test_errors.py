"""pipeline.core.errors: a BundleError is a ValueError, which the command line turns into exit
code 2 with one line naming the cause."""

from __future__ import annotations

import pytest

from pipeline.cli import EXIT_BAD_INPUT, main
from pipeline.core.errors import BundleError


def test_bundle_error_is_a_value_error_carrying_its_message():
    assert issubclass(BundleError, ValueError)
    with pytest.raises(ValueError, match="no manifest"):
        raise BundleError("no manifest")


def test_the_command_line_maps_a_missing_bundle_to_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "in.csv").write_text("a\n1\n")
    missing = tmp_path / "no_model"
    args = ["score", "--model", str(missing), "--input", str(tmp_path / "in.csv")]
    code = main(args + ["--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT == 2
    assert err.startswith("vaepipe score: error: ")
    assert str(missing) in err
    assert len(err.strip().splitlines()) == 1
