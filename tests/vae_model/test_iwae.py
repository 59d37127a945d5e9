"""The importance-weighted bound (IWAE): closed-form pieces, the ELBO at K=1, tightening in K."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from vae_model import losses


def _elbo(model, x, numpy_terms, draws: int = 400) -> np.ndarray:
    """Per-record ELBO: Monte-Carlo reconstruction over many draws, closed-form KL (the
    trained model has no scoring tolerance, so the scoring terms are the trained likelihood)."""
    assert model.score_tolerance == 0
    return -numpy_terms(model.score_terms(x, mc_samples=draws))["score"]


def test_log_density_ratio_matches_scipy():
    rng = np.random.default_rng(0)
    z, mean = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    log_var = rng.uniform(-2, 1, size=(5, 3))
    expected = (norm.logpdf(z) - norm.logpdf(z, mean, np.exp(0.5 * log_var))).sum(axis=1)
    got = np.asarray(losses.log_density_ratio(z, mean, log_var))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_iwae_bound_of_equal_weights_is_the_weight():
    # logsumexp of K equal log weights w, minus log K, is exactly w.
    weights = np.full((7, 4), -3.25, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(losses.iwae_bound(weights)), -3.25, rtol=1e-6)


def _blocked_bound(log_weights: np.ndarray, k: int) -> float:
    """Mean IWAE_k over disjoint blocks of k draws: an estimate of E[IWAE_k]."""
    n, records = log_weights.shape
    blocks = log_weights[: n - n % k].reshape(-1, k, records).transpose(1, 0, 2)
    return float(np.mean(np.asarray(losses.iwae_bound(blocks.reshape(k, -1)))))


def test_k1_equals_elbo_in_expectation(trained, numpy_terms):
    model, x = trained.model, trained.x_val
    # Each row of log weights is a one-draw (K=1) bound; 2000 of them estimate its mean.
    one_draw = model.iwae_log_weights(x, 2000, seed=7).mean()
    assert one_draw == pytest.approx(_elbo(model, x, numpy_terms, 2000).mean(), abs=0.08)


def test_bound_is_above_the_elbo_and_tightens_with_k(trained, numpy_terms):
    model, x = trained.model, trained.x_val
    log_weights = model.iwae_log_weights(x, 2000, seed=11)
    bounds = {k: _blocked_bound(log_weights, k) for k in (1, 5, 50)}
    elbo = _elbo(model, x, numpy_terms, 2000).mean()
    assert bounds[1] <= bounds[5] <= bounds[50], bounds
    assert bounds[5] > elbo + 0.05 and bounds[50] > bounds[5] + 0.005, (bounds, elbo)
    # The public bound with its own draws agrees with the blocked estimate.
    k50 = np.mean([model.iwae_bound(x, 50, seed=s).mean() for s in range(8)])
    assert k50 == pytest.approx(bounds[50], abs=0.05)
    assert k50 > elbo


def test_bound_is_logmeanexp_of_the_first_k_weights(trained):
    model, x = trained.model, trained.x_val
    first = model.iwae_log_weights(x, 50, seed=3)[:5]
    np.testing.assert_allclose(
        model.iwae_bound(x, 5, seed=3), np.asarray(losses.iwae_bound(first)), rtol=1e-5
    )


def test_a_records_bound_does_not_depend_on_its_batch(trained):
    model, x = trained.model, trained.x_val
    whole = model.iwae_bound(x, 8, seed=3)
    alone = np.concatenate([model.iwae_bound(x[i : i + 1], 8, seed=3) for i in range(5)])
    np.testing.assert_allclose(alone, whole[:5], rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(whole))


def test_scoring_likelihood_lowers_bound_only_through_tolerance(trained):
    model, x = trained.model, trained.x_val
    # Without a tolerance the scoring likelihood is the trained one.
    np.testing.assert_allclose(
        model.iwae_bound(x, 4, seed=1, scoring=True), model.iwae_bound(x, 4, seed=1), rtol=1e-6
    )


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_rejects_bad_k(trained, k):
    with pytest.raises(ValueError, match="k must be positive"):
        trained.model.iwae_bound(trained.x_val, k)
