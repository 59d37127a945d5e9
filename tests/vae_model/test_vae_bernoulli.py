"""The Bernoulli (intensity) feature group: closed-form NLL, layout compatibility, the model.

`data/tabular_vae_base.keras` and `data/tabular_vae_base_golden.json` were saved by the code
before the group existed (commit 4a59c15: a 2-numeric + 1-categorical VAE fitted 3 epochs on
64 seeded synthetic records, with its scores and reconstructions, on TensorFlow): this code
must load it and score it as it did.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from vae_model import VAE, FeatureLayout, fit_vae, likelihoods, losses, pack, validate_packed

DATA = Path(__file__).parent / "data"
PIXELS = tuple(f"px_{i}" for i in range(12))


def np_(x):
    return keras.ops.convert_to_numpy(x)


def test_bernoulli_nll_matches_a_hand_computation():
    # x = 0.25, logit 2: p = sigmoid(2) = 0.880797; -(0.25 log p + 0.75 log(1 - p))
    p = 1.0 / (1.0 + math.exp(-2.0))
    by_hand = -(0.25 * math.log(p) + 0.75 * math.log(1.0 - p))
    assert by_hand == pytest.approx(1.626928, abs=1e-6)
    got = np_(likelihoods.bernoulli_nll(np.float32([0.25]), np.float32([2.0])))
    np.testing.assert_allclose(got, [by_hand], rtol=1e-6)
    # binary x: -log p for a 1, -log(1 - p) for a 0; at logit 0 both are log 2
    x = np.float32([1.0, 0.0, 1.0, 0.0])
    logits = np.float32([2.0, 2.0, 0.0, 0.0])
    expected = [-math.log(p), -math.log(1 - p), math.log(2), math.log(2)]
    np.testing.assert_allclose(np_(likelihoods.bernoulli_nll(x, logits)), expected, rtol=1e-6)


def test_bernoulli_nll_is_finite_and_exact_for_huge_logits():
    x = np.float32([1.0, 0.0, 1.0, 0.0, 0.5])
    logits = np.float32([200.0, -200.0, -200.0, 200.0, 300.0])
    got = np_(likelihoods.bernoulli_nll(x, logits))
    assert np.isfinite(got).all()
    # confident and right: ~0; confident and wrong: ~|logit|; x = 0.5 at 300: 150
    np.testing.assert_allclose(got, [0.0, 0.0, 200.0, 200.0, 150.0], atol=1e-4)


def test_feature_nll_appends_bernoulli_columns_masked():
    layout = FeatureLayout(numeric=("a",), bernoulli=("p0", "p1"))
    values = np.float32([[0.5, 0.2, 1.0], [1.0, 0.0, 0.7]])
    mask = np.float32([[1, 1, 1], [1, 1, 0]])
    outputs = {
        "numeric_mu": np.float32([[0.0], [1.0]]),
        "numeric_log_var": np.float32([[0.0], [0.0]]),
        "categorical_logits": [],
        "bernoulli_logits": np.float32([[1.0, -1.0], [3.0, 2.0]]),
    }
    got = np_(losses.feature_nll(pack(values, mask), outputs, layout))
    softplus = np.log1p(np.exp(outputs["bernoulli_logits"]))
    bern = softplus - values[:, 1:] * outputs["bernoulli_logits"]
    gauss = 0.5 * (math.log(2 * math.pi) + (values[:, :1] - outputs["numeric_mu"]) ** 2)
    expected = np.concatenate([gauss, bern], axis=1) * mask
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got[1, 2] == 0.0  # the missing intensity adds nothing


# ----------------------------------------------------------------- layout compatibility


def test_a_layout_config_without_the_bernoulli_group_still_loads():
    old = {"numeric": ["bytes"], "categorical": [["proto", 4]]}  # as saved before the group
    layout = FeatureLayout.from_config(old)
    assert layout.bernoulli == () and layout.width == 2
    assert layout.to_config() == old  # a tabular layout saves exactly as before


def test_a_bernoulli_layout_round_trips_and_orders_features_last():
    layout = FeatureLayout(numeric=("n",), categorical=(("c", 3),), bernoulli=PIXELS)
    config = json.loads(json.dumps(layout.to_config()))
    assert config["bernoulli"] == list(PIXELS)
    assert FeatureLayout.from_config(config) == layout
    assert layout.width == 14 and layout.input_dim == 28 and layout.bernoulli_start == 2
    assert layout.feature_names[2:] == PIXELS
    with pytest.raises(ValueError, match="Received duplicates: \\['px_0'\\]"):
        FeatureLayout(bernoulli=("px_0", "px_1", "px_0"))


def test_validate_packed_checks_intensities():
    layout = FeatureLayout(bernoulli=("p0", "p1"))
    validate_packed(pack(np.float32([[0.0, 1.0]]), np.ones((1, 2))), layout)
    with pytest.raises(ValueError, match="intensities in \\[0, 1\\]"):
        validate_packed(pack(np.float32([[0.0, 1.5]]), np.ones((1, 2))), layout)


def test_a_model_saved_before_the_bernoulli_group_loads_and_scores_identically():
    model = keras.saving.load_model(DATA / "tabular_vae_base.keras", safe_mode=True, compile=False)
    golden = json.loads((DATA / "tabular_vae_base_golden.json").read_text())
    saved = {key: np.asarray(value, np.float32) for key, value in golden.items()}
    terms = model.predict_on_batch(saved["x"])
    # Equal up to float32 rounding: the backend (JAX) or the CPU's instruction set may sum in
    # another order; a changed layer, seed or formula would differ by far more.
    for key in ("score", "reconstruction_nll", "kl", "feature_nll", "z_mean"):
        np.testing.assert_allclose(terms[key], saved[key], rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(
        model.reconstruct_from_code(saved["z_mean"]), saved["reconstruction"], rtol=1e-5, atol=1e-5
    )
    assert "bernoulli" not in model.get_config()["layout"]
    # A fresh model of that layout has the same layers (no extra head) as the saved one.
    fresh = VAE(model.get_config()["layout"], latent_dim=2, hidden_units=(8,), seed=4)

    def layers(m):  # weight paths without the model's own name (vae, vae_1, ... by session)
        return [(w.path.split("/", 1)[1], tuple(w.shape)) for w in m.weights]

    assert layers(fresh) == layers(model)


# ---------------------------------------------------------------------------- the model


def _intensities(n: int, seed: int) -> np.ndarray:
    """Two kinds of 12-pixel 'images': the left or the right half bright, plus noise."""
    rng = np.random.default_rng(seed)
    left = rng.random(n) < 0.5
    base = np.where(left[:, None], np.r_[np.ones(6), np.zeros(6)], np.r_[np.zeros(6), np.ones(6)])
    values = np.clip(base + rng.normal(0, 0.1, (n, 12)), 0, 1)
    return pack(values, np.ones_like(values))


def test_a_bernoulli_model_learns_saves_and_reconstructs_intensities(tmp_path):
    keras.utils.set_random_seed(0)
    layout = FeatureLayout(bernoulli=PIXELS)
    model = VAE(layout.to_config(), latent_dim=2, hidden_units=(16,), seed=0)
    x_train, x_val = _intensities(256, 1), _intensities(64, 2)
    before = float(np.mean(np_(model.score_terms(x_val)["score"])))
    fit_vae(model, x_train, x_val, epochs=15, learning_rate=1e-2, patience=15,
            checkpoint_dir=tmp_path, batch_size=32, print_fn=lambda _: None)  # fmt: skip
    terms = {k: np_(v) for k, v in model.score_terms(x_val).items()}
    assert terms["feature_nll"].shape == (64, 12)
    assert float(np.mean(terms["score"])) < before - 2.0
    decoded = model.reconstruct_from_code(terms["z_mean"])
    assert decoded.shape == (64, 12) and decoded.min() >= 0.0 and decoded.max() <= 1.0
    # reconstructions sit much closer to the inputs than the average image does
    error = np.abs(decoded - x_val[:, :12]).mean()
    assert error < 0.5 * np.abs(x_val[:, :12] - x_val[:, :12].mean(axis=0)).mean()

    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    assert loaded.get_config()["layout"]["bernoulli"] == list(PIXELS)
    np.testing.assert_allclose(
        np_(loaded.score_terms(x_val)["score"]), terms["score"], rtol=1e-5, atol=1e-4
    )
    # the anomaly score orders an image of neither kind above the ones it learned
    odd = pack(np.tile([1.0, 0.0], 6)[None], np.ones((1, 12)))
    assert float(np_(model.score_terms(odd)["score"])[0]) > np.quantile(terms["score"], 0.99)
