"""pipeline.kinds (the registry): the kinds it knows, a clear error for one it does not, and each
kind's encoding read back from the JSON a bundle stores."""

from __future__ import annotations

import pytest

from configs import ConfigError
from pipeline import kinds
from pipeline.features.image_encoding import ImageEncoding
from pipeline.features.tabular_encoding import CategoricalSpec, NumericSpec, TabularEncoding

ENCODINGS = {
    "tabular": TabularEncoding(
        numeric=(NumericSpec("bytes", 100.0, 20.0), NumericSpec("temp", -1.5, 0.25)),
        categorical=(
            CategoricalSpec("proto", ("tcp", "udp")),
            CategoricalSpec("port", ("22", "80", "443"), True),
        ),
    ),
    "image": ImageEncoding(height=8, width=6, mode="RGB", likelihood="gaussian", patch_size=3),
}
METHODS = (
    "encoding_from_json", "check_inputs", "prepare", "read_typed", "for_scoring",
    "decoded_schema", "decoded_table", "decoded_tables_dir",
)  # fmt: skip


def test_names_lists_the_kinds_sorted():
    assert kinds.names() == ["image", "tabular"]


@pytest.mark.parametrize("name", ["tabular", "image"])
def test_get_returns_the_kind_named_with_every_datakind_method(name):
    kind = kinds.get(name)
    assert kind.name == name
    assert kind is kinds.get(name)  # one object per kind
    for method in METHODS:
        assert callable(getattr(kind, method)), method


@pytest.mark.parametrize("name", ["video", "Tabular", "", "__init__"])
def test_an_unknown_kind_is_a_config_error_listing_the_known_ones(name):
    with pytest.raises(ConfigError) as caught:
        kinds.get(name)
    assert str(caught.value) == f"data.kind must be one of ['image', 'tabular']. Received: {name!r}"


@pytest.mark.parametrize("name", ["tabular", "image"])
def test_load_encoding_round_trips_each_kinds_json(name):
    encoding = ENCODINGS[name]
    back = kinds.load_encoding(name, encoding.to_json())
    assert type(back) is type(encoding)
    assert back == encoding
    assert back.columns == encoding.columns and back.kinds == encoding.kinds


def test_load_encoding_of_an_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="data.kind must be one of"):
        kinds.load_encoding("audio", "{}")
