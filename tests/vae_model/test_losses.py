"""Closed-form checks of the likelihoods and ELBO terms against plain numpy."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from vae_model import FeatureLayout, likelihoods, losses, pack


def np_(x):
    return keras.ops.convert_to_numpy(x)


def np_gaussian_nll(x, mu, log_var):
    return 0.5 * (math.log(2 * math.pi) + log_var + (x - mu) ** 2 / np.exp(log_var))


def np_categorical_nll(index, logits):
    m = logits.max(axis=-1, keepdims=True)
    log_z = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    return log_z - logits[np.arange(len(index)), index]


def np_kl(mu, lv):
    return 0.5 * np.sum(np.exp(lv) + mu**2 - 1.0 - lv, axis=-1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_gaussian_nll_closed_form(rng):
    x, mu = rng.normal(size=(2, 5, 3)).astype(np.float32)
    log_var = rng.uniform(-3, 3, size=(5, 3)).astype(np.float32)
    got = np_(likelihoods.gaussian_nll(x, mu, log_var))
    np.testing.assert_allclose(got, np_gaussian_nll(x, mu, log_var), rtol=1e-5, atol=1e-6)


def test_gaussian_nll_standard_normal_at_zero():
    got = np_(likelihoods.gaussian_nll(np.zeros(1), np.zeros(1), np.zeros(1)))
    np.testing.assert_allclose(got, [0.5 * math.log(2 * math.pi)], rtol=1e-6)


def test_categorical_nll_closed_form(rng):
    logits = rng.normal(size=(6, 4)).astype(np.float32) * 3
    index = rng.integers(0, 4, size=6)
    expected = np_categorical_nll(index, logits)
    np.testing.assert_allclose(np_(likelihoods.categorical_nll(index, logits)), expected, rtol=1e-5)
    # Indices arrive as floats in the packed input.
    as_float = index.astype(np.float32)
    np.testing.assert_allclose(
        np_(likelihoods.categorical_nll(as_float, logits)), expected, rtol=1e-5
    )


def test_categorical_nll_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)
    got = np_(likelihoods.categorical_nll(np.array([0, 1, 2]), logits))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[:2], [0.0, 2e4], rtol=1e-6, atol=1e-6)
    # -1e4 + log(3) is only representable to ~1e-3 in float32.
    np.testing.assert_allclose(got[2], math.log(3), atol=2e-3)


def test_kl_closed_form_and_zero_at_prior(rng):
    mu = rng.normal(size=(7, 4)).astype(np.float32)
    lv = rng.uniform(-2, 2, size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(
        np_(losses.kl_standard_normal(mu, lv)), np_kl(mu, lv), rtol=1e-5, atol=1e-6
    )
    zero = np_(losses.kl_standard_normal(np.zeros((3, 4)), np.zeros((3, 4))))
    np.testing.assert_array_equal(zero, np.zeros(3))


LAYOUT = FeatureLayout(numeric=("a", "b"), categorical=(("c", 3), ("d", 2)))


def decoder_outputs(rng, batch):
    return {
        "numeric_mu": rng.normal(size=(batch, 2)).astype(np.float32),
        "numeric_log_var": rng.uniform(-1, 1, size=(batch, 2)).astype(np.float32),
        "categorical_logits": [
            rng.normal(size=(batch, 3)).astype(np.float32),
            rng.normal(size=(batch, 2)).astype(np.float32),
        ],
    }


def test_feature_nll_matches_formulas_and_masks_exactly(rng):
    values = np.array([[0.3, -1.2, 2.0, 1.0], [9.0, 0.5, 1.0, 0.0]])
    mask = np.array([[1, 1, 1, 1], [0, 1, 0, 1]])
    out = decoder_outputs(rng, 2)
    got = np_(losses.feature_nll(pack(values, mask), out, LAYOUT))
    expected = np.concatenate(
        [
            np_gaussian_nll(values[:, :2], out["numeric_mu"], out["numeric_log_var"]),
            np_categorical_nll(values[:, 2].astype(int), out["categorical_logits"][0])[:, None],
            np_categorical_nll(values[:, 3].astype(int), out["categorical_logits"][1])[:, None],
        ],
        axis=1,
    )
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)
    np.testing.assert_allclose(got[1, [1, 3]], expected[1, [1, 3]], rtol=1e-5)
    assert got[1, 0] == 0.0 and got[1, 2] == 0.0  # missing: exactly zero


def test_missing_nan_placeholders_do_not_leak(rng):
    x = pack(np.array([[np.nan, 0.1, np.nan, 1.0]]), np.array([[0, 1, 0, 1]]))
    got = np_(losses.feature_nll(x, decoder_outputs(rng, 1), LAYOUT))
    assert np.all(np.isfinite(got))
    assert got[0, 0] == 0.0 and got[0, 2] == 0.0


def test_elbo_terms_consistency_and_log_var_clamp(rng):
    values = rng.normal(size=(4, 4)).astype(np.float32)
    values[:, 2:] = rng.integers(0, 2, size=(4, 2))
    x = pack(values, np.ones((4, 4)))
    out = decoder_outputs(rng, 4)
    out["numeric_log_var"][:] = 100.0  # must be clamped to max_log_var
    z_mean = rng.normal(size=(4, 3)).astype(np.float32)
    z_log_var = np.full((4, 3), -50.0, np.float32)  # must be clamped to min_log_var
    terms = {k: np_(v) for k, v in losses.elbo_terms(x, out, z_mean, z_log_var, LAYOUT).items()}

    np.testing.assert_allclose(terms["reconstruction_nll"], terms["feature_nll"].sum(-1), rtol=1e-6)
    np.testing.assert_allclose(
        terms["negative_elbo"], terms["reconstruction_nll"] + terms["kl"], rtol=1e-6
    )
    np.testing.assert_allclose(
        terms["feature_nll"][:, :2],
        np_gaussian_nll(values[:, :2], out["numeric_mu"], losses.DEFAULT_MAX_LOG_VAR),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        terms["kl"], np_kl(z_mean, np.full_like(z_log_var, losses.DEFAULT_MIN_LOG_VAR)), rtol=1e-5
    )


def test_training_loss_is_mean_of_weighted_terms():
    terms = {"reconstruction_nll": ops.convert_to_tensor([1.0, 3.0]), "kl": ops.array([2.0, 4.0])}
    assert float(np_(losses.training_loss(terms, 0.5))) == pytest.approx(((1 + 1) + (3 + 2)) / 2)


def _terms(nll: list[float]) -> dict:
    return {"reconstruction_nll": ops.convert_to_tensor(nll), "kl": ops.zeros(len(nll))}


def test_trimmed_loss_leaves_out_the_worst_explained_share_once_active():
    terms = _terms([4.0, 1.0, 100.0, 3.0, 2.0, 50.0, 6.0, 5.0, 7.0, 8.0])
    plain = float(np_(losses.training_loss(terms, 1.0)))
    assert plain == pytest.approx(18.6)
    # 10 - floor(0.8 * 10) = 2 records left out: 100 and 50.
    assert float(np_(losses.training_loss(terms, 1.0, 0.2))) == pytest.approx(36 / 8)
    # The share rounds up to whole records: 0.25 leaves out 3 (and 8), 0.05 one (100).
    assert float(np_(losses.training_loss(terms, 1.0, 0.25))) == pytest.approx(28 / 7)
    assert float(np_(losses.training_loss(terms, 1.0, 0.05))) == pytest.approx(86 / 9)
    assert float(np_(losses.training_loss(terms, 1.0, 0.2, active=False))) == pytest.approx(plain)


def test_trimmed_loss_has_no_gradient_for_the_records_left_out():
    import jax  # noqa: F401  (the gradient is checked where it is cheapest to ask for)

    if keras.backend.backend() != "jax":
        pytest.skip("gradient checked on the JAX backend")
    nll = np.array([1.0, 2.0, 30.0, 4.0], np.float32)

    def loss(v):
        return losses.training_loss({"reconstruction_nll": v, "kl": v * 0}, 1.0, 0.25)

    grad = np.asarray(jax.grad(loss)(nll))
    np.testing.assert_allclose(grad, [1 / 3, 1 / 3, 0.0, 1 / 3], rtol=1e-6)
