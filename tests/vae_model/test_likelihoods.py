"""vae_model.likelihoods against their closed forms (scipy and numpy), including the large
values where a naive formula overflows."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import special, stats

from vae_model import likelihoods


def np_of(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def test_gaussian_nll_is_minus_the_normal_log_density():
    rng = np.random.default_rng(0)
    x, mu = rng.normal(size=50), rng.normal(size=50)
    log_var = rng.uniform(-4, 4, 50)
    got = np_of(likelihoods.gaussian_nll(x, mu, log_var))
    expected = -stats.norm.logpdf(x, loc=mu, scale=np.exp(0.5 * log_var))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gaussian_nll_at_the_mean_with_unit_variance_is_half_log_two_pi():
    got = np_of(likelihoods.gaussian_nll(np.zeros(3), np.zeros(3), np.zeros(3)))
    np.testing.assert_allclose(got, 0.5 * np.log(2 * np.pi), rtol=1e-6)


def test_gaussian_nll_broadcasts_over_a_batch():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = np_of(likelihoods.gaussian_nll(x, np.float32(1.0), np.float32(0.0)))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, -stats.norm.logpdf(x, 1.0, 1.0), rtol=1e-5)


def test_categorical_nll_is_minus_the_log_softmax_of_the_class():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3, size=(40, 5)).astype(np.float32)
    index = rng.integers(0, 5, 40)
    got = np_of(likelihoods.categorical_nll(index, logits))
    expected = -special.log_softmax(logits.astype(np.float64), axis=1)[np.arange(40), index]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_categorical_nll_takes_float_indices_rounded():
    logits = np.array([[0.0, 1.0, 2.0]] * 3, dtype=np.float32)
    got = np_of(likelihoods.categorical_nll(np.array([2.0, 0.9999, 0.2], np.float32), logits))
    expected = -special.log_softmax(logits[0].astype(np.float64))[[2, 1, 0]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_categorical_nll_is_finite_for_large_logits():
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]], dtype=np.float32)
    got = np_of(likelihoods.categorical_nll(np.array([2, 0]), logits))
    # float32 holds 1e4 to about 1e-3: the log 2 on top of it is exact to that.
    np.testing.assert_allclose(got, [2e4, np.log(2)], rtol=1e-5, atol=2e-3)


def binary_cross_entropy(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    p = special.expit(logits)
    return -(x * np.log(p) + (1 - x) * np.log1p(-p))


def test_bernoulli_nll_is_the_binary_cross_entropy():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 1, 40), [0.0, 1.0, 0.5]])  # grey and pure pixels
    logits = rng.normal(scale=4, size=len(x))
    got = np_of(likelihoods.bernoulli_nll(x, logits))
    np.testing.assert_allclose(got, binary_cross_entropy(x, logits), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "logit", "expected"),
    [(0.0, 200.0, 200.0), (1.0, 200.0, 0.0), (1.0, -200.0, 200.0), (0.0, -200.0, 0.0),
     (0.25, 1e4, 7.5e3)],
)  # fmt: skip
def test_bernoulli_nll_is_finite_for_large_logits(x, logit, expected):
    # Where log(sigmoid(l)) underflows to -inf, softplus(l) - x * l stays exact.
    got = np_of(likelihoods.bernoulli_nll(np.float32(x), np.float32(logit)))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_bernoulli_nll_of_a_grey_pixel_is_smallest_at_its_logit_and_equals_its_entropy():
    logits = np.linspace(-3, 3, 601, dtype=np.float32)
    got = np_of(likelihoods.bernoulli_nll(np.float32(0.5), logits))
    assert logits[np.argmin(got)] == pytest.approx(0.0, abs=1e-2)
    assert got.min() == pytest.approx(np.log(2), rel=1e-5)
