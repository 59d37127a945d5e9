"""The config loader: defaults < YAML files < --set, strict keys and types, safe YAML."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import yaml

from configs.loader import (
    BUILTIN_DIR,
    builtin_config_path,
    dump_config,
    from_dict,
    load_config,
    parse_override,
    save_config,
    to_dict,
)
from configs.schema import (
    ConfigError,
    DataConfig,
    ImageConfig,
    ModelConfig,
    VaepipeConfig,
)

SECTIONS = {
    f.name: typing.get_type_hints(VaepipeConfig)[f.name] for f in dataclasses.fields(VaepipeConfig)
}


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------- defaults


def test_no_files_no_overrides_gives_the_dataclass_defaults():
    config = load_config()
    assert config == VaepipeConfig()
    assert config.model.latent_dim == "auto"
    assert config.model.hidden_units == (128, 64)
    assert config.data.id_column is None
    assert config.scoring.code_dtype == "int8"


def test_empty_yaml_file_gives_the_defaults(tmp_path):
    assert load_config([write(tmp_path, "empty.yaml", "")]) == VaepipeConfig()


def test_empty_section_keeps_that_sections_defaults(tmp_path):
    path = write(tmp_path, "c.yaml", "model:\ntrain:\n  epochs: 3\n")
    config = load_config([path])
    assert config.model == ModelConfig()
    assert config.train.epochs == 3


# ------------------------------------------------------------------------------ YAML files


def test_yaml_values_are_applied_and_lists_become_tuples(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "data:\n  id_column: rid\n  exclude_columns: [label, ts]\n"
        "model:\n  latent_dim: 4\n  hidden_units: [32, 16]\n  beta: 2\n",
    )
    config = load_config([path])
    assert config.data.id_column == "rid"
    assert config.data.exclude_columns == ("label", "ts")
    assert config.model.latent_dim == 4
    assert config.model.hidden_units == (32, 16)
    # An int given for a float field becomes a float.
    assert config.model.beta == 2.0 and isinstance(config.model.beta, float)
    # Untouched keys keep their defaults.
    assert config.model.activation == ModelConfig().activation
    assert config.train == VaepipeConfig().train


def test_later_files_override_earlier_ones_key_by_key(tmp_path):
    first = write(tmp_path, "a.yaml", "model:\n  latent_dim: 4\n  beta: 0.5\n")
    second = write(tmp_path, "b.yaml", "model:\n  latent_dim: 6\n")
    config = load_config([first, second])
    assert config.model.latent_dim == 6
    assert config.model.beta == 0.5  # deep merge: the second file does not reset beta


def test_set_overrides_beat_files(tmp_path):
    path = write(tmp_path, "a.yaml", "model:\n  latent_dim: 4\n")
    config = load_config([path], ["model.latent_dim=2", "data.id_column=key"])
    assert config.model.latent_dim == 2
    assert config.data.id_column == "key"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "nope.yaml"])


def test_file_that_is_not_a_mapping_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_config([write(tmp_path, "list.yaml", "- a\n- b\n")])


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = write(tmp_path, "bad.yaml", "model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config([path])


# ------------------------------------------------------------------------- unknown keys


def test_unknown_key_error_names_the_full_key(tmp_path):
    path = write(tmp_path, "c.yaml", "model:\n  latent_dimm: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key model\.latent_dimm") as err:
        load_config([path])
    assert "latent_dim" in str(err.value)  # the valid keys are listed


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="unknown config key modle .*top level"):
        from_dict({"modle": {"latent_dim": 4}})


def test_unknown_key_in_set_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key scoring\.top_feature\b"):
        load_config(overrides=["scoring.top_feature=2"])


def test_section_that_is_not_a_mapping_is_named():
    with pytest.raises(ConfigError, match="^model must be a mapping"):
        from_dict({"model": [1, 2]})


# ----------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.latent_dim=eight",
            r"model\.latent_dim must be a positive integer or 'auto'\. Received: 'eight'",
        ),
        (
            "model.latent_dim=8.5",
            r"model\.latent_dim must be of type int\. Received: 8\.5 \(float\)",
        ),
        (
            "model.latent_dim=true",
            r"model\.latent_dim must be of type int\. Received: True \(bool\)",
        ),
        ("model.beta=abc", r"model\.beta must be of type float\. Received: 'abc' \(str\)"),
        ("model.beta=true", r"model\.beta must be of type float\. Received: True \(bool\)"),
        (
            "data.csv_has_header=1",
            r"data\.csv_has_header must be of type bool\. Received: 1 \(int\)",
        ),
        ("data.id_column=[a]", r"data\.id_column must be of type str\. Received: \['a'\] \(list\)"),
        ("model.hidden_units=64", r"model\.hidden_units must be a list\. Received: 64"),
        ("model.hidden_units=[64, x]", r"model\.hidden_units\[1\] must be of type int"),
        ("data.exclude_columns=[a, 1]", r"data\.exclude_columns\[1\] must be of type str"),
    ],
)
def test_wrong_type_names_the_key_and_the_type(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_wrong_type_in_a_file_names_the_key(tmp_path):
    path = write(tmp_path, "c.yaml", "train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"train\.epochs must be of type int"):
        load_config([path])


def test_null_is_accepted_for_optional_fields_only():
    assert load_config(overrides=["data.id_column="]).data.id_column is None
    assert load_config(overrides=["data.id_column=null"]).data.id_column is None
    with pytest.raises(ConfigError, match=r"model\.latent_dim must be of type int"):
        load_config(overrides=["model.latent_dim=null"])


# ---------------------------------------------------------------------------- --set forms


def test_set_values_are_parsed_as_yaml():
    config = load_config(
        overrides=[
            "model.hidden_units=[32, 16]",
            "model.beta=0.25",
            "data.csv_has_header=false",
            "data.column_names=[a, b]",
            "data.csv_delimiter=;",
        ]
    )
    assert config.model.hidden_units == (32, 16)
    assert config.model.beta == 0.25
    assert config.data.csv_has_header is False
    assert config.data.column_names == ("a", "b")
    assert config.data.csv_delimiter == ";"


def test_set_accepts_exponent_floats():
    """PyYAML (YAML 1.1) reads `1e-4` as a string; a float field must still accept it."""
    config = load_config(overrides=["train.learning_rate=1e-4", "model.beta=2.5E+0"])
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert config.model.beta == 2.5


def test_parse_override_builds_a_nested_mapping():
    assert parse_override("model.latent_dim=4") == {"model": {"latent_dim": 4}}
    assert parse_override(" model.activation = tanh") == {"model": {"activation": "tanh"}}
    # Only the first '=' splits: the value may contain '='.
    assert parse_override("data.id_column=a=b") == {"data": {"id_column": "a=b"}}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("model.latent_dim", r"--set expects section\.key=value\. Received: 'model\.latent_dim'"),
        ("=4", r"--set expects section\.key=value"),
        ("latent_dim=4", r"--set key must be section\.key .*Received: 'latent_dim'"),
        ("model.latent.dim=4", r"--set key must be section\.key .*'model\.latent\.dim'"),
        ("model.=4", r"--set key must be section\.key"),
        (".latent_dim=4", r"--set key must be section\.key"),
    ],
)
def test_bad_set_forms_are_config_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[item])


def test_set_value_that_is_not_yaml_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"--set model\.hidden_units: value is not valid YAML"):
        load_config(overrides=["model.hidden_units=[1, 2"])


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.format=xlsx", r"data\.format must be one of"),
        ("data.csv_delimiter=ab", r"data\.csv_delimiter must be one character"),
        ("data.csv_has_header=false", r"data\.column_names is required"),
        ("model.latent_dim=0", r"model\.latent_dim must be a positive integer or .auto.\. Recei"),
        ("model.min_log_var=7.0", r"model\.min_log_var must be below model\.max_log_var"),
        ("model.score_tolerance=-1", r"model\.score_tolerance must be >= 0\. Received: -1"),
        ("model.trim_fraction=0.5", r"model\.trim_fraction must be in \[0, 0\.5\)\. Received"),
        ("model.member_trim_fraction=-1", r"model\.member_trim_fraction must be in \[0, 0\.5\)"),
        ("model.trim_start_epoch=-1", r"model\.trim_start_epoch must be >= 0 or null\. Rec"),
        ("model.ensemble_size=0", r"model\.ensemble_size must be an integer from 1 to 8"),
        ("train.validation_fraction=1.5", r"train\.validation_fraction must be in \(0, 1\)"),
        ("scoring.code_dtype=int4", r"scoring\.code_dtype must be one of"),
        ("schema.validation_sample_rate=0", r"schema\.validation_sample_rate must be in \(0, 1\]"),
        ("schema.validation_min_rows=0", r"schema\.validation_min_rows must be an integer >= 1"),
        ("schema.validation_min_rows=many", r"schema\.validation_min_rows must be of type int"),
    ],
)
def test_out_of_range_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="must leave at least 10%"):
        load_config(overrides=["train.validation_fraction=0.5", "train.calibration_fraction=0.4"])
    with pytest.raises(ConfigError, match="both categorical and numeric"):
        load_config(overrides=["data.categorical_columns=[a]", "data.numeric_columns=[a]"])
    with pytest.raises(ConfigError, match="excluded columns cannot also be modelled"):
        load_config(overrides=["data.exclude_columns=[a]", "data.numeric_columns=[a]"])


# ------------------------------------------------------------------- the example config


def _yaml_sections(name: str = "tabular") -> dict:
    return yaml.safe_load(builtin_config_path(name).read_text())


# Sections only images use are documented in image.yaml, not in tabular.yaml.
IMAGE_ONLY_SECTIONS = {"image"}


@pytest.mark.parametrize("name", ["tabular", "image"])
def test_every_key_in_the_yaml_configs_is_a_dataclass_field(name):
    tree = _yaml_sections(name)
    assert set(tree) <= set(SECTIONS), f"unknown sections: {set(tree) - set(SECTIONS)}"
    for section, keys in tree.items():
        fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
        assert set(keys) <= fields, f"{section}: unknown keys {set(keys) - fields}"


def test_every_dataclass_field_is_documented_in_tabular_yaml():
    tree = _yaml_sections()
    for section, cls in SECTIONS.items():
        if section in IMAGE_ONLY_SECTIONS:
            assert section not in tree, f"{section} belongs in image.yaml"
            continue
        assert section in tree, f"section {section} missing from tabular.yaml"
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = fields - set(tree[section])
        assert not missing, f"{section}: fields missing from tabular.yaml: {sorted(missing)}"


def test_every_image_key_is_documented_in_image_yaml_with_a_comment():
    tree = _yaml_sections("image")
    for section in IMAGE_ONLY_SECTIONS:
        fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
        missing = fields - set(tree.get(section, {}))
        assert not missing, f"{section}: fields missing from image.yaml: {sorted(missing)}"
    assert tree["data"]["kind"] == "image" and "image_likelihood" in tree["model"]
    # "with why": every key of the image section carries a comment on its line
    text = builtin_config_path("image").read_text()
    section = text.split("\nimage:\n", 1)[1].split("\n\n", 1)[0]
    keys = re.findall(r"^  (\w+):(.*)$", section, flags=re.MULTILINE)
    assert {key for key, _ in keys} == set(tree["image"])
    for key, rest in keys:
        assert "#" in rest, f"image.{key} has no comment in image.yaml"


def test_tabular_yaml_shows_the_defaults():
    """The example says every key is shown with its default: loading it changes nothing."""
    assert load_config([builtin_config_path("tabular")]) == VaepipeConfig()


def test_image_yaml_loads_as_an_image_config():
    config = load_config([builtin_config_path("image")])
    assert config.data.kind == "image"
    assert config.image == ImageConfig()  # the image section shows its defaults
    assert config.model.image_likelihood == "bernoulli"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("image.mode=RGBA", "image.mode must be one of \\['L', 'RGB'\\]"),
        ("image.height=0", "image.height must be positive"),
        ("image.extensions=[png]", "image.extensions must look like .png"),
        ("image.max_pixels=100", "image.max_pixels \\(100\\) is below"),
        ("image.resize=maybe", "image.resize must be of type bool"),
        ("model.image_likelihood=poisson", "model.image_likelihood must be one of"),
    ],
)
def test_image_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([builtin_config_path("image")], [override])


@pytest.mark.parametrize(
    "override",
    ["data.id_column=id", "data.exclude_columns=[label]", "data.format=csv",
     "data.numeric_columns=[x]"],
)  # fmt: skip
def test_table_settings_are_refused_for_images(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"{key} "):
        load_config([builtin_config_path("image")], [override])


# ------------------------------------------------------------------------ save and reload


def test_resolved_config_round_trips_through_dump_and_load(tmp_path):
    config = load_config(
        overrides=[
            "data.id_column=rid",
            "data.exclude_columns=[label, ts]",
            "data.csv_has_header=false",
            "data.column_names=[rid, a, label, ts]",
            'data.csv_delimiter="\\t"',  # YAML double quotes: a tab
            "model.hidden_units=[7]",
            "model.beta=0.3",
            "train.learning_rate=0.00001",
            "scoring.code_dtype=float16",
        ]
    )
    text = dump_config(config)
    assert text.startswith("# Resolved vaepipe config")
    path = write(tmp_path, "resolved.yaml", text)
    assert load_config([path]) == config


def test_save_config_writes_a_loadable_file(tmp_path):
    # YAML 1.1 reads a bare `yes` as true: a column named yes is quoted on the command line.
    config = load_config(overrides=["model.latent_dim=3", "data.id_column='yes'"])
    path = tmp_path / "sub" / "config.yaml"
    save_config(config, str(path))
    reloaded = load_config([path])
    assert reloaded == config
    assert reloaded.data.id_column == "yes"  # quoted on dump, so not read back as a bool


def test_to_dict_is_plain_data_matching_the_dataclasses():
    tree = to_dict(VaepipeConfig())
    assert tree["model"]["hidden_units"] == [128, 64]
    assert set(tree) == set(SECTIONS)
    assert from_dict(tree) == VaepipeConfig()


@dataclasses.dataclass(frozen=True)
class _DataWithSecrets(DataConfig):
    """DataConfig plus secret-looking keys (no shipped field is secret yet)."""

    gcs_api_key: str = "k-123"
    db_password: str = "hunter2"
    access_token: str | None = None
    client_secret: str = ""


def test_to_dict_redacts_secret_looking_values():
    config = VaepipeConfig(data=_DataWithSecrets())
    tree = to_dict(config)
    assert tree["data"]["gcs_api_key"] == "***"
    assert tree["data"]["db_password"] == "***"
    # Empty values carry no secret and stay as they are.
    assert tree["data"]["access_token"] is None
    assert tree["data"]["client_secret"] == ""
    # Other values are untouched.
    assert tree["data"]["csv_delimiter"] == ","
    assert tree["model"] == to_dict(VaepipeConfig())["model"]
    text = dump_config(config)
    assert "k-123" not in text and "hunter2" not in text


# ---------------------------------------------------------------------------- safe YAML


def test_yaml_cannot_construct_python_objects(tmp_path):
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        "evil.yaml",
        f"model:\n  activation: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config([path])
    assert not marker.exists()


def test_python_object_tag_rejected_in_set(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(
            overrides=[f"model.activation=!!python/object/apply:os.system ['touch {marker}']"]
        )
    assert not marker.exists()


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """Presets may set a subset of keys; every key they set must exist and validate."""
    assert isinstance(load_config([path]), VaepipeConfig)


def test_compression_preset_trades_rate_for_distortion():
    config = load_config([builtin_config_path("compression")])
    assert config.model.beta < 0.1 and config.model.numeric_variance == "feature"
    assert config.data.numeric_scaling == "std"
