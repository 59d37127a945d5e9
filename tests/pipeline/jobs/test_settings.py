"""A model's later runs: the trained config with the files and --set given layered on it;
settings fixed at training are refused when they change, never silently replaced."""

from __future__ import annotations

import dataclasses

import pytest

from configs import ConfigError, VaepipeConfig, builtin_config_path
from configs.loader import dump_config
from pipeline.core.errors import BundleError
from pipeline.jobs.settings import check_model_settings, is_fixed, model_config


def fake_bundle(tmp_path, **sections) -> str:
    """A folder with what model_config reads: config.yaml (and a manifest, so it is a bundle)."""
    config = VaepipeConfig()
    for name, values in sections.items():
        config = dataclasses.replace(
            config, **{name: dataclasses.replace(getattr(config, name), **values)}
        )
    (tmp_path / "config.yaml").write_text(dump_config(config))
    (tmp_path / "manifest.json").write_text("{}")
    return str(tmp_path)


@pytest.fixture
def trained(tmp_path) -> str:
    return fake_bundle(
        tmp_path,
        data={"id_column": "id", "exclude_columns": ("label",)},
        model={"hidden_units": (64, 32)},
        scoring={"target_fpr": 0.05},
    )


def test_files_are_layered_on_the_trained_config_not_on_the_defaults(trained, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("scoring:\n  top_features: 2\ndata:\n  csv_delimiter: ';'\n")
    config = model_config(trained, [str(extra)])
    assert config.data.id_column == "id" and config.data.exclude_columns == ("label",)
    assert config.model.hidden_units == (64, 32)
    assert config.scoring.top_features == 2 and config.data.csv_delimiter == ";"
    assert config.scoring.target_fpr == 0.05  # not the default 0.01


def test_the_training_config_given_again_is_refused_naming_each_changed_key(trained):
    """The defaults file says id_column: null, exclude_columns: [] ... (the reported defect:
    record ids became file:line and the carried columns vanished)."""
    with pytest.raises(ConfigError) as err:
        model_config(trained, [str(builtin_config_path("tabular"))])
    message = str(err.value)
    assert "fixed at training" in message
    for key in ("data.id_column", "data.exclude_columns", "model.hidden_units"):
        assert key in message
    assert "trained: 'id'" in message and "tabular.yaml: None" in message
    assert "scoring.target_fpr" not in message  # a scoring setting: honoured, not refused


@pytest.mark.parametrize(
    "override",
    [
        "data.id_column=other",
        "data.exclude_columns=[]",
        "data.kind=image",
        "data.categorical_columns=[a]",
        "data.numeric_scaling=iqr",
        "model.beta=0.5",
        "train.epochs=1",
        "schema.max_vocabulary=5",
        "schema.int_categorical_max_values=9",
        "schema.schema_file=s.pbtxt",
    ],
)
def test_each_fixed_setting_is_refused_when_it_changes(trained, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"fixed at training.*{key}"):
        model_config(trained, (), [override])


def test_fixed_settings_equal_to_the_trained_values_are_accepted(trained):
    config = model_config(
        trained, (), ["data.id_column=id", "data.exclude_columns=[label]", "model.beta=1.0"]
    )
    assert config.data.id_column == "id"


def test_run_settings_may_change(trained):
    config = model_config(
        trained, (), ["scoring.target_fpr=0.2", "data.format=csv", "schema.on_anomaly=fail"]
    )
    assert config.scoring.target_fpr == 0.2 and config.schema.on_anomaly == "fail"
    assert not is_fixed("scoring.target_fpr") and is_fixed("train.seed")


def test_a_folder_that_is_not_a_model_is_named(tmp_path):
    with pytest.raises(BundleError, match="notabundle is not a model bundle.*manifest.json"):
        model_config(str(tmp_path / "notabundle"))


def test_a_missing_config_file_is_an_error(trained, tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        model_config(trained, [str(tmp_path / "missing.yaml")])


def test_an_unknown_activation_is_named_before_any_job():
    bad = dataclasses.replace(VaepipeConfig().model, activation="relux")
    with pytest.raises(ConfigError, match="model.activation.*'relux'"):
        check_model_settings(dataclasses.replace(VaepipeConfig(), model=bad))
    check_model_settings(VaepipeConfig())  # relu
