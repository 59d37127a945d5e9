"""vaepipe.settings: Python keyword settings become the loader's `section.key=value` overrides,
and the loader reads them back as the values given."""

from __future__ import annotations

import dataclasses

import pytest

from configs import ConfigError, VaepipeConfig, load_config
from vaepipe.settings import overrides

DEFAULTS = VaepipeConfig()
KEYS = {
    section.name: [f.name for f in dataclasses.fields(getattr(DEFAULTS, section.name))]
    for section in dataclasses.fields(DEFAULTS)
}
SHARED = {k for s, keys in KEYS.items() for k in keys if sum(k in v for v in KEYS.values()) > 1}


def test_a_unique_key_finds_its_section():
    for section, keys in KEYS.items():
        for key in keys:
            if key not in SHARED:
                assert overrides({key: 1}) == [f"{section}.{key}=1"], key


def test_section_double_underscore_key_and_dotted_keys():
    assert overrides({"train__batch_size": 64}) == ["train.batch_size=64"]
    assert overrides({"scoring__batch_size": 8}) == ["scoring.batch_size=8"]
    assert overrides({"model.beta": 0.5}) == ["model.beta=0.5"]


def test_values_are_json_and_tuples_become_lists():
    assert overrides({"hidden_units": (32, 16), "exclude_columns": ["label"]}) == [
        "model.hidden_units=[32, 16]",
        'data.exclude_columns=["label"]',
    ]
    assert overrides({"id_column": None, "resize": True}) == [
        "data.id_column=null",
        "image.resize=true",
    ]
    assert overrides({"id_column": "id"}) == ['data.id_column="id"']


def test_the_loader_reads_the_overrides_back_as_the_values_given():
    settings = {
        "latent_dim": 3,
        "hidden_units": (12, 6),
        "train__batch_size": 64,
        "scoring.batch_size": 16,
        "id_column": "id: with colon",  # quoted JSON keeps YAML from reading a mapping
        "beta": 0.25,
        "column_names": None,
    }
    config = load_config((), overrides(settings))
    assert config.model.latent_dim == 3 and config.model.hidden_units == (12, 6)
    assert config.train.batch_size == 64 and config.scoring.batch_size == 16
    assert config.data.id_column == "id: with colon"
    assert config.model.beta == 0.25 and config.data.column_names is None


def test_an_ambiguous_name_lists_every_spelling():
    assert "batch_size" in SHARED
    with pytest.raises(ConfigError) as caught:
        overrides({"batch_size": 64})
    assert str(caught.value) == (
        "setting 'batch_size' is a key of several sections: write "
        "train__batch_size or scoring__batch_size"
    )


def test_an_unknown_name_is_named():
    with pytest.raises(ConfigError) as caught:
        overrides({"latnet_dim": 3})
    assert str(caught.value) == (
        "unknown setting 'latnet_dim': no config section has a key of that name"
    )


def test_an_unknown_section_key_is_named_by_the_loader():
    with pytest.raises(ConfigError, match=r"train\.latnet_dim"):
        load_config((), overrides({"train__latnet_dim": 3}))


def test_no_settings_no_overrides():
    assert overrides({}) == []
