"""vae_model.steps: the backend-neutral plumbing of the train/test/predict steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vae_model import steps


def np_of(value) -> np.ndarray:
    return keras.ops.convert_to_numpy(value)


@pytest.mark.parametrize(
    "wrap",
    [lambda x: x, lambda x: (x,), lambda x: (x, np.zeros(2)), lambda x: (x, None, np.ones(2))],
    ids=["x", "(x,)", "(x, y)", "(x, y, w)"],
)
def test_inputs_from_data_takes_x_as_float32(wrap):
    x = np.array([[1, 2], [3, 4]], dtype=np.float64)
    got = steps.inputs_from_data(wrap(x))
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_array_equal(np_of(got), x.astype(np.float32))


def test_take_returns_up_to_count_items_and_stops_only_when_empty():
    items = iter(range(5))
    assert steps._take(items, 3) == [0, 1, 2]
    assert steps._take(items, 3) == [3, 4]  # a ragged last group
    with pytest.raises(StopIteration):
        steps._take(items, 3)


def test_all_finite_checks_the_loss_and_every_gradient():
    grads = [np.ones((2, 2), np.float32), np.zeros(3, np.float32)]
    assert bool(np_of(steps._all_finite(np.float32(1.0), grads)))
    assert not bool(np_of(steps._all_finite(np.float32(np.nan), grads)))
    bad = [grads[0], np.array([0.0, np.inf, 0.0], np.float32)]
    assert not bool(np_of(steps._all_finite(np.float32(1.0), bad)))


def test_select_keeps_the_new_or_the_old_values_whole():
    new = [np.full(2, 1.0, np.float32), np.full((2, 2), 2.0, np.float32)]
    old = [np.zeros(2, np.float32), np.zeros((2, 2), np.float32)]
    for keep, expected in ((True, new), (False, old)):
        chosen = steps._select(np.bool_(keep), new, old)
        for got, want in zip(chosen, expected, strict=True):
            np.testing.assert_array_equal(np_of(got), want)


def test_state_value_finds_a_non_trainable_variable_by_identity(small_model, records):
    small_model(records(4, seed=0))  # build the weights
    values = [f"value-{i}" for i in range(len(small_model.non_trainable_variables))]
    position = next(
        i for i, v in enumerate(small_model.non_trainable_variables) if v is small_model.kl_weight
    )
    assert steps._state_value(small_model, small_model.kl_weight, values) == values[position]
    stranger = keras.Variable(0.0, trainable=False, name="stranger")
    with pytest.raises(KeyError, match="stranger"):
        steps._state_value(small_model, stranger, values)


def test_predict_step_is_the_deterministic_forward_pass(small_model, records):
    x = records(16, seed=1)
    predicted = small_model.predict_on_batch(x)
    direct = small_model(x, training=False)
    assert set(predicted) >= {"score", "z_mean", "feature_nll"}
    for key in ("score", "z_mean", "feature_nll"):
        np.testing.assert_allclose(np_of(predicted[key]), np_of(direct[key]), rtol=1e-5, atol=1e-6)
    again = small_model.predict_on_batch(x)
    np.testing.assert_array_equal(np_of(again["score"]), np_of(predicted["score"]))
