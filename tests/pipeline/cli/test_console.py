"""pipeline.cli.console: the libraries' start-up noise is silenced for the process, without
overriding what the user set, and the command line's help shows none of it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pipeline.cli import console

REPO_ROOT = Path(__file__).resolve().parents[3]
NOISE = ("FutureWarning", "DeprecationWarning", "tensorflow", "absl", "cuda", "Unable to register")


@pytest.fixture
def restored_logging():
    """quiet_libraries changes process-wide logging; give the other tests theirs back."""
    levels = {n: logging.getLogger(n).level for n in console._LOUD_LOGGERS}
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root.handlers[:], root.level = handlers, root_level


def test_sets_the_quiet_variables_that_are_unset(monkeypatch, restored_logging):
    for name in console._QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        console.quiet_libraries()
    for name, value in console._QUIET_ENV.items():
        assert os.environ[name] == value
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"


def test_keeps_the_variables_a_user_set(monkeypatch, restored_logging):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # a user debugging TensorFlow
    monkeypatch.setenv("GRPC_VERBOSITY", "DEBUG")
    with warnings.catch_warnings():
        console.quiet_libraries()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert os.environ["GRPC_VERBOSITY"] == "DEBUG"


def test_filters_library_warnings_and_lowers_the_loud_loggers(restored_logging):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet_libraries()
        warnings.warn("old API", FutureWarning, stacklevel=1)
        warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("user", UserWarning, stacklevel=1)
        warnings.warn("still shown", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["still shown"]
    for name in console._LOUD_LOGGERS:
        assert logging.getLogger(name).level == logging.ERROR


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in console._QUIET_ENV}
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-m", "pipeline.cli", "--help"],
        [sys.executable, "-m", "pipeline.cli", "validate", "--help"],
        [sys.executable, "-m", "pipeline.cli", "demo", "--help"],
    ],
    ids=["top", "validate", "demo"],
)
def test_help_prints_usage_and_no_library_noise(argv):
    result = _run(*argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: vaepipe")
    assert result.stderr == ""


def test_the_command_line_parser_imports_no_heavy_library():
    # Why help is quiet and quick: parsing imports neither Beam nor TensorFlow nor Keras.
    code = (
        "import sys; from pipeline.cli import build_parser; "
        "build_parser().parse_known_args(['validate', '--model', 'm', '--input', 'i']); "
        "print(sorted(m for m in ('apache_beam', 'tensorflow', 'keras', 'jax') "
        "if m in sys.modules))"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert result.stderr == ""


@pytest.mark.slow
def test_a_failing_command_prints_one_error_line_and_no_library_noise(tmp_path):
    # validate loads Beam, TFDV and TensorFlow before it finds the bundle missing.
    (tmp_path / "in.csv").write_text("a\n1\n")
    result = _run(
        sys.executable, "-m", "pipeline.cli", "validate",
        "--model", str(tmp_path / "none"), "--input", str(tmp_path / "in.csv"),
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaepipe validate: error: "), result.stderr
    assert not any(word in result.stderr for word in NOISE)
