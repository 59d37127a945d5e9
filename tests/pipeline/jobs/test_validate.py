"""Driver-side checks before a job: output folders, named columns, delimiters, dry runs."""

from __future__ import annotations

import dataclasses

import pytest

from configs import ConfigError, VaepipeConfig
from configs.schema import DataConfig
from pipeline.core.fs import same_or_nested
from pipeline.jobs.validate import (
    check_named_columns,
    check_output_dir,
    check_training_inputs,
    delimiter_hint,
    is_dry_run,
)


def config_with(**data) -> VaepipeConfig:
    return dataclasses.replace(VaepipeConfig(), data=DataConfig(**data))


@pytest.mark.parametrize("output", ["model", "model/out", "model/../model/x", ".", "./"])
def test_an_output_folder_overlapping_the_model_is_refused(tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match="overlap.*would change the model bundle"):
        check_output_dir(output, "model")


def test_outputs_beside_the_model_and_remote_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_output_dir("model-out", "model")  # a name that starts like the model's is apart
    assert not same_or_nested("gs://b/job/scores", "gs://b/job/model")
    assert same_or_nested("gs://b/job/model/", "gs://b/job/model")
    assert same_or_nested("gs://b/job", "gs://b/job/model")


def test_an_existing_file_as_output_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is an existing file: it must be a folder"):
        check_output_dir(str(tmp_path / "file"))


def test_a_semicolon_file_read_with_commas_names_the_delimiter_setting(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("id;a;b\n1;2;3\n")
    hint = delimiter_hint([str(path)], DataConfig())
    assert "data.csv_delimiter" in hint and "';'" in hint
    assert delimiter_hint([str(path)], DataConfig(csv_delimiter=";")) == ""
    tabbed = tmp_path / "tab.csv"
    tabbed.write_text("id\ta\n1\t2\n")
    assert '"\\t"' in delimiter_hint([str(tabbed)], DataConfig())
    with pytest.raises(ConfigError, match="csv_delimiter"):
        check_training_inputs(str(path), config_with())


def test_training_inputs_name_a_wrong_id_column_and_missing_excluded_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,a,label\n1,2,0\n")
    check_training_inputs(str(path), config_with(id_column="id", exclude_columns=("label",)))
    with pytest.raises(ConfigError, match="data.id_column 'key' is not a column of"):
        check_training_inputs(str(path), config_with(id_column="key"))
    with pytest.raises(ConfigError, match=r"exclude_columns.*\['lable'\]"):
        check_training_inputs(str(path), config_with(exclude_columns=("lable",)))
    with pytest.raises(FileNotFoundError, match="no input files match"):
        check_training_inputs(str(tmp_path / "none-*.csv"), config_with())
    notes = check_named_columns([str(path)], DataConfig(exclude_columns=("x",)), True)
    assert notes and "left empty" in notes[0]  # scoring: a batch may lack a label column


def test_dry_runs_are_dataflow_dry_runs_only():
    assert is_dry_run(["--runner=DataflowRunner", "--dry_run=True"])
    assert not is_dry_run(["--runner=DataflowRunner"])
    assert not is_dry_run(["--dry_run=True"])  # the DirectRunner ignores it and runs
