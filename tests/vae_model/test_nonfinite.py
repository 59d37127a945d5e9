"""Non-finite losses: stop with a clear message (default) or skip the batch (by config)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vae_model import VAE, FeatureLayout, fit_vae

LAYOUT = FeatureLayout(numeric=("a", "b"), categorical=(("c", 3),))


def _data(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    values = np.stack([a, a + 0.1 * rng.normal(size=rows), rng.integers(0, 3, rows)], axis=1)
    return np.concatenate([values, np.ones_like(values)], axis=1).astype(np.float32)


def _poisoned(rows: int) -> np.ndarray:
    data = _data(rows, 0)
    data[0, 0] = np.nan  # one observed (mask 1) NaN: its batch has a NaN loss
    return data


def _model() -> VAE:
    return VAE(layout=LAYOUT.to_config(), latent_dim=2, hidden_units=(8,), seed=0)


def test_nan_loss_stops_training_and_saves_nothing(tmp_path):
    with pytest.raises(FloatingPointError, match="loss became NaN at epoch 1"):
        fit_vae(_model(), _poisoned(256), _data(64, 1), epochs=2, learning_rate=1e-2,
                patience=2, checkpoint_dir=tmp_path, batch_size=32, print_fn=None)  # fmt: skip
    assert not list(tmp_path.glob("*.keras"))


def test_skip_batch_trains_on_the_finite_batches_only(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    initial = [w.copy() for w in model.get_weights()]
    history = fit_vae(model, _poisoned(256), _data(64, 1), epochs=5, learning_rate=1e-2,
                      patience=5, checkpoint_dir=tmp_path, batch_size=32, print_fn=None,
                      skip_nonfinite=True)  # fmt: skip
    assert all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert any(not np.allclose(a, b) for a, b in zip(initial, model.get_weights(), strict=True))
    assert (tmp_path / "best.keras").exists()
