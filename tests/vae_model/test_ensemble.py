"""VAEEnsemble: the members' scoring terms averaged, the first member's codes and decoder."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vae_model import VAE, FeatureLayout
from vae_model.ensemble import AVERAGED_TERMS, VAEEnsemble, average_terms, member_seed


def _member(layout: FeatureLayout, seed: int, latent_dim: int = 3) -> VAE:
    return VAE(layout.to_config(), latent_dim=latent_dim, hidden_units=(8,), seed=seed)


@pytest.fixture
def members(layout) -> list[VAE]:
    keras.utils.set_random_seed(0)
    return [_member(layout, seed) for seed in (1, 2, 3)]


def test_scores_are_the_mean_of_the_members_and_codes_the_first_members(
    members, records, numpy_terms
):
    x = records(64, seed=5)
    each = [numpy_terms(m.score_terms(x)) for m in members]
    # Differently seeded members must disagree, or the mean below would prove nothing.
    assert not np.allclose(each[0]["score"], each[1]["score"])
    ensemble = VAEEnsemble(members)
    for terms in (ensemble.scoring_function(jit_compile=False)(x), ensemble.score_terms(x)):
        for key in AVERAGED_TERMS:
            expected = np.mean([t[key] for t in each], axis=0)
            np.testing.assert_allclose(terms[key], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(terms["z_mean"], each[0]["z_mean"])
    # The terms still add up: score = reconstruction + KL, reconstruction = sum of features.
    terms = ensemble.score_terms(x)
    np.testing.assert_allclose(terms["score"], terms["reconstruction_nll"] + terms["kl"], 1e-5)
    np.testing.assert_allclose(terms["reconstruction_nll"], terms["feature_nll"].sum(1), 1e-4)


def test_anything_but_scoring_is_the_first_member(members, records):
    ensemble = VAEEnsemble(members)
    assert ensemble.layout is members[0].layout and ensemble.latent_dim == 3
    assert len(ensemble) == 3
    z = np.zeros((2, 3), np.float32)
    np.testing.assert_array_equal(
        ensemble.reconstruct_from_code(z), members[0].reconstruct_from_code(z)
    )


def test_mc_samples_reach_every_member(members):
    ensemble = VAEEnsemble(members)
    ensemble.score_mc_samples = 4
    assert [m.score_mc_samples for m in members] == [4, 4, 4]
    assert ensemble.score_mc_samples == 4


def test_one_member_is_that_member(members, records, numpy_terms):
    x = records(16, seed=6)
    terms = VAEEnsemble(members[:1]).score_terms(x)
    expected = numpy_terms(members[0].score_terms(x))
    for key, value in expected.items():
        np.testing.assert_array_equal(terms[key], value)


def test_members_must_model_the_same_records(members, layout):
    other = FeatureLayout(numeric=("x",), categorical=())
    with pytest.raises(ValueError, match="member 1 models another layout"):
        VAEEnsemble([members[0], _member(other, 4)])
    with pytest.raises(ValueError, match="member 2 has latent_dim 5, member 0 has 3"):
        VAEEnsemble([members[0], members[1], _member(layout, 4, latent_dim=5)])
    with pytest.raises(ValueError, match="at least one member"):
        VAEEnsemble([])


def test_average_terms_keeps_the_first_code():
    a = {"score": np.array([1.0]), "reconstruction_nll": np.array([1.0]), "kl": np.zeros(1),
         "feature_nll": np.array([[1.0]]), "z_mean": np.array([[0.5]])}  # fmt: skip
    b = {**a, "score": np.array([3.0]), "z_mean": np.array([[9.0]])}
    out = average_terms([a, b])
    assert out["score"].tolist() == [2.0] and out["z_mean"].tolist() == [[0.5]]


def test_member_seeds_are_distinct_across_nearby_runs():
    seeds = {member_seed(seed, k) for seed in range(10) for k in range(8)}
    assert len(seeds) == 80 and member_seed(7, 0) == 7
