"""Prior codes and records decoded from them (one tiny model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.report.samples import decoded_prior, prior_codes


def test_prior_codes_are_seeded_standard_normal():
    codes = prior_codes(3, 20_000, seed=4)
    assert codes.shape == (20_000, 3) and codes.dtype == np.float32
    np.testing.assert_array_equal(codes, prior_codes(3, 20_000, seed=4))
    assert not np.array_equal(codes[:5], prior_codes(3, 5, seed=5))
    assert np.abs(codes.mean(axis=0)).max() < 0.05
    assert np.abs(codes.std(axis=0) - 1.0).max() < 0.05
    assert prior_codes(3, 0, seed=0).shape == (0, 3)


def test_negative_rows_are_refused():
    with pytest.raises(ValueError, match=r"rows must be >= 0. Received: -1"):
        prior_codes(2, -1, seed=0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import vaepipe
    from pipeline.artifacts.bundle import load_bundle

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b", "c"], size=300)})
    detector = vaepipe.fit(frame, epochs=2, hidden_units=[16], latent_dim=2)
    return load_bundle(detector.save(str(tmp_path_factory.mktemp("m") / "model"))).model


def test_draws_are_seeded_and_categories_are_indices(model):
    values = decoded_prior(model, 500, seed=1)
    assert values.shape == (500, model.layout.width)
    np.testing.assert_array_equal(values, decoded_prior(model, 500, seed=1))
    assert not np.array_equal(values, decoded_prior(model, 500, seed=2))
    (cardinality,) = model.layout.cardinalities
    category = values[:, len(model.layout.numeric)]
    assert set(np.unique(category)) <= set(range(cardinality))


def test_most_likely_records_are_the_decoder_means(model):
    values = decoded_prior(model, 50, seed=3, likely=True)
    expected = np.asarray(model.reconstruct_from_code(prior_codes(2, 50, seed=3)), np.float32)
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_no_rows_is_an_empty_table(model):
    assert decoded_prior(model, 0, seed=0).shape == (0, model.layout.width)
