"""configs.schema: the defaults are valid, and every validate() error names its key and echoes
the value it refused (so a user can find the line in their YAML or --set)."""

from __future__ import annotations

import dataclasses

import pytest

from configs.schema import (
    DATA_KINDS,
    IMAGE_EXTENSIONS,
    CompressConfig,
    ConfigError,
    DataConfig,
    ImageConfig,
    ModelConfig,
    SchemaConfig,
    ScoringConfig,
    TrainConfig,
    VaepipeConfig,
)

SECTIONS = {
    "data": DataConfig,
    "schema": SchemaConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "scoring": ScoringConfig,
    "image": ImageConfig,
    "compress": CompressConfig,
}


def test_every_section_default_is_valid():
    for cls in SECTIONS.values():
        cls().validate()
    VaepipeConfig().validate()


def test_the_whole_config_holds_one_default_of_each_section():
    config = VaepipeConfig()
    assert {f.name for f in dataclasses.fields(config)} == set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert getattr(config, name) == cls()


def test_defaults_of_the_choice_keys_are_among_their_choices():
    assert DataConfig().kind in DATA_KINDS
    assert ImageConfig().extensions == IMAGE_EXTENSIONS


# One value out of range per checked key: (section, key, bad value).
BAD_VALUES = [
    ("data", "kind", "video"),
    ("data", "format", "xlsx"),
    ("data", "numeric_scaling", "minmax"),
    ("data", "chunk_rows", 0),
    ("data", "csv_delimiter", ";;"),
    ("data", "encoding", "no-such-codec"),
    ("data", "encoding", "base64"),  # a codec, but bytes-to-bytes: decodes no text
    ("schema", "on_anomaly", "ignore"),
    ("schema", "on_drift", "ignore"),
    ("schema", "drift_js_threshold", 0.0),
    ("schema", "drift_js_threshold", 1.5),
    ("schema", "drift_linf_threshold", -0.1),
    ("schema", "max_vocabulary", 0),
    ("schema", "int_categorical_max_values", -1),
    ("schema", "validation_sample_rate", 0.0),
    ("schema", "validation_sample_rate", 1.01),
    ("schema", "validation_min_rows", 0),
    ("schema", "validation_min_rows", -400),
    ("schema", "validation_min_rows", 2.5),
    ("schema", "validation_min_rows", True),
    ("schema", "drift_p_value", 1.0),
    ("schema", "identifier_distinct_share", 0.0),
    ("model", "latent_dim", 0),
    ("model", "image_likelihood", "poisson"),
    ("model", "numeric_variance", "global"),
    ("model", "beta", -0.5),
    ("model", "kl_warmup_epochs", -1),
    ("model", "score_tolerance", -0.25),
    ("train", "on_nonfinite", "ignore"),
    ("train", "steps_per_execution", 0),
    ("train", "min_steps_per_epoch", -3),
    ("train", "epochs", 0),
    ("train", "batch_size", -8),
    ("train", "learning_rate", 0.0),
    ("train", "validation_fraction", 0.0),
    ("train", "calibration_fraction", 1.0),
    ("train", "early_stopping_patience", 0),
    ("scoring", "target_fpr", 0.0),
    ("scoring", "target_fpr", 1.0),
    ("scoring", "flag_rate_alarm_p", 2.0),
    ("scoring", "top_features", 0),
    ("scoring", "code_dtype", "int4"),
    ("scoring", "batch_size", 0),
    ("scoring", "mc_samples", -1),
    ("image", "height", 0),
    ("image", "width", -28),
    ("image", "mode", "CMYK"),
    ("image", "max_pixels", 0),
    ("image", "patch_size", 0),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES)
def test_validate_names_the_key_and_echoes_the_value(section, key, value):
    config = SECTIONS[section](**{key: value})
    with pytest.raises(ConfigError) as caught:
        config.validate()
    message = str(caught.value)
    assert f"{section}.{key}" in message
    # Echoed after "Received:", as written (strings quoted).
    assert f"Received: {value!r}" in message or f"Received: {value}" in message, message


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES)
def test_the_whole_config_runs_each_sections_checks(section, key, value):
    config = VaepipeConfig(**{section: SECTIONS[section](**{key: value})})
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        config.validate()


def test_hidden_units_must_be_positive_and_the_list_is_echoed():
    for units in [(), (16, 0), (-4,)]:
        with pytest.raises(ConfigError) as caught:
            ModelConfig(hidden_units=units).validate()
        assert "model.hidden_units" in str(caught.value)
        assert f"Received: {list(units)}" in str(caught.value)


def test_validation_sampling_defaults_keep_the_rate_on_full_chunks():
    schema, data = SchemaConfig(), DataConfig()
    assert (schema.validation_sample_rate, schema.validation_min_rows) == (0.1, 400)
    # The floor only raises the share of chunks shorter than data.chunk_rows.
    assert schema.validation_min_rows <= schema.validation_sample_rate * data.chunk_rows


def test_validation_min_rows_error_says_what_it_means():
    with pytest.raises(ConfigError, match=r"integer >= 1 \(a chunk of at most this many rows"):
        SchemaConfig(validation_min_rows=0).validate()


# --------------------------------------------------------------------- cross-field checks


def test_log_variance_bounds_must_be_ordered_and_both_are_echoed():
    with pytest.raises(ConfigError) as caught:
        ModelConfig(min_log_var=2.0, max_log_var=2.0).validate()
    message = str(caught.value)
    assert "model.min_log_var" in message and "model.max_log_var" in message
    assert "2.0 >= 2.0" in message


def test_validation_and_calibration_must_leave_ten_percent_for_training():
    TrainConfig(validation_fraction=0.4, calibration_fraction=0.49).validate()
    with pytest.raises(ConfigError) as caught:
        TrainConfig(validation_fraction=0.45, calibration_fraction=0.45).validate()
    message = str(caught.value)
    assert "train.validation_fraction + train.calibration_fraction" in message
    assert "0.45 + 0.45" in message


def test_headerless_csv_needs_column_names():
    with pytest.raises(ConfigError, match=r"data\.column_names .*data\.csv_has_header"):
        DataConfig(csv_has_header=False).validate()
    DataConfig(csv_has_header=False, column_names=("a", "b")).validate()


def test_a_column_cannot_be_both_categorical_and_numeric():
    config = DataConfig(categorical_columns=("a", "b"), numeric_columns=("b", "c"))
    with pytest.raises(ConfigError) as caught:
        config.validate()
    message = str(caught.value)
    assert "['b']" in message
    assert "data.categorical_columns" in message and "data.numeric_columns" in message


def test_excluded_columns_cannot_be_modelled():
    config = VaepipeConfig(data=DataConfig(exclude_columns=("label",), numeric_columns=("label",)))
    with pytest.raises(ConfigError) as caught:
        config.validate()
    assert "['label']" in str(caught.value) and "data.exclude_columns" in str(caught.value)


def test_image_extensions_must_start_with_a_dot_and_the_bad_ones_are_listed():
    with pytest.raises(ConfigError) as caught:
        ImageConfig(extensions=(".png", "jpg", ".")).validate()
    message = str(caught.value)
    assert "image.extensions" in message and "['jpg', '.']" in message


def test_image_max_pixels_must_hold_the_models_own_size():
    ImageConfig(height=64, width=64, max_pixels=64 * 64).validate()
    with pytest.raises(ConfigError) as caught:
        ImageConfig(height=64, width=64, max_pixels=64 * 64 - 1).validate()
    message = str(caught.value)
    assert "image.max_pixels (4095)" in message and "64 x 64" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id_column", "id"),
        ("exclude_columns", ("label",)),
        ("column_names", ("a",)),
        ("categorical_columns", ("c",)),
        ("numeric_columns", ("x",)),
        ("bigquery_query", "SELECT 1"),
    ],
)
def test_table_keys_are_refused_with_images_naming_the_key_and_value(key, value):
    config = VaepipeConfig(data=DataConfig(kind="image", **{key: value}))
    with pytest.raises(ConfigError) as caught:
        config.validate()
    message = str(caught.value)
    assert f"data.{key} applies to tables only" in message
    assert repr(value) in message


def test_images_need_format_auto():
    config = VaepipeConfig(data=DataConfig(kind="image", format="csv"))
    with pytest.raises(ConfigError, match=r"data\.format must be auto .*Received: 'csv'"):
        config.validate()
    VaepipeConfig(data=DataConfig(kind="image")).validate()


def test_config_error_is_a_value_error():
    # The command line maps ValueErrors to exit code 2 with the message on one line.
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("n_features", "size"), [(1, 8), (6, 8), (143, 8), (144, 9), (300, 18), (512, 32), (10_000, 32)]
)
def test_auto_latent_size_is_one_dimension_per_16_columns_within_8_to_32(n_features, size):
    assert ModelConfig(latent_dim="auto").latent_size(n_features) == size


def test_an_integer_latent_dim_is_the_size_whatever_the_width():
    assert ModelConfig(latent_dim=5).latent_size(512) == 5


@pytest.mark.parametrize("value", [0, -3, "big", "Auto"])
def test_latent_dim_takes_a_positive_integer_or_auto(value):
    with pytest.raises(ConfigError, match="model.latent_dim must be a positive integer or 'auto'"):
        ModelConfig(latent_dim=value).validate()
