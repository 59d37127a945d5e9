"""FeatureLayout validation/serialization and the packed-input helpers."""

import json

import keras
import numpy as np
import pytest

from vae_model import FeatureLayout, pack, unpack, validate_packed


def test_properties(layout):
    assert layout.n_numeric == 2
    assert layout.n_categorical == 1
    assert layout.width == 3
    assert layout.input_dim == 6
    assert layout.onehot_dim == 4
    assert layout.feature_names == ("bytes", "duration", "proto")


def test_config_round_trips_through_json(layout):
    config = json.loads(json.dumps(layout.to_config()))
    restored = FeatureLayout.from_config(config)
    assert restored == layout
    assert hash(restored) == hash(layout)  # lists were coerced back to tuples


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"categorical": (("proto", 1),)},
            "cardinality must be >= 2. Received: cardinality=1 for feature 'proto'",
        ),
        ({"numeric": ("a", "a")}, "Received duplicates: ['a']"),
        ({"numeric": ("a",), "categorical": (("a", 3),)}, "Received duplicates: ['a']"),
        ({}, "at least one feature"),
        ({"numeric": ("",)}, "non-empty strings"),
    ],
)
def test_invalid_layouts_raise_with_values(kwargs, message):
    with pytest.raises(ValueError) as err:
        FeatureLayout(**kwargs)
    assert message in str(err.value)


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="Unknown FeatureLayout config keys"):
        FeatureLayout.from_config({"numeric": ["a"], "extra": 1})


def test_pack_unpack_round_trip_numpy(layout):
    values = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, 1.0]])
    mask = np.array([[1, 1, 1], [0, 1, 1]])
    x = pack(values, mask)
    assert x.dtype == np.float32 and x.shape == (2, layout.input_dim)
    v, m = unpack(x, layout)
    np.testing.assert_array_equal(v, values.astype(np.float32))
    np.testing.assert_array_equal(m, mask.astype(np.float32))


def test_pack_unpack_backend_tensors(layout):
    values = keras.ops.ones((4, 3))
    mask = keras.ops.zeros((4, 3))
    v, m = unpack(pack(values, mask), layout)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), np.ones((4, 3)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(m), np.zeros((4, 3)))


def test_pack_and_unpack_reject_wrong_shapes(layout):
    with pytest.raises(ValueError, match="same shape"):
        pack(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2 \\* width = 6"):
        unpack(np.zeros((2, 5)), layout)


def test_validate_packed(layout):
    good = pack(np.array([[0.1, 0.2, 3.0]]), np.ones((1, 3)))
    validate_packed(good, layout)
    out_of_range = pack(np.array([[0.1, 0.2, 4.0]]), np.ones((1, 3)))
    with pytest.raises(ValueError, match="'proto' needs integer indices in \\[0, 4\\)"):
        validate_packed(out_of_range, layout)
    # The same bad index is fine when the feature is missing.
    validate_packed(pack(np.array([[0.1, 0.2, 4.0]]), np.array([[1, 1, 0]])), layout)
    with pytest.raises(ValueError, match="Mask columns"):
        validate_packed(pack(np.zeros((1, 3)), np.full((1, 3), 0.5)), layout)
