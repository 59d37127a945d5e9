"""Fused JAX training: `fit_resident` (one compiled call per epoch) and fused
``steps_per_execution``. They run under KERAS_BACKEND=jax (see test_vae_backends.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vae_model import VAE, KLWarmup, fit_vae
from vae_model.resident import fit_resident

ON_JAX = keras.backend.backend() == "jax"
jax_only = pytest.mark.skipif(not ON_JAX, reason="device-resident training is JAX-only")


def _model(layout, **kwargs) -> VAE:
    model = VAE(layout.to_config(), latent_dim=3, hidden_units=(16,), seed=3, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


@pytest.mark.skipif(ON_JAX, reason="checks the refusal on other backends")
def test_fit_resident_refuses_other_backends(layout, records):
    with pytest.raises(NotImplementedError, match="KERAS_BACKEND=jax"):
        fit_resident(_model(layout), records(64, seed=0), batch_size=16, epochs=1)


@jax_only
def test_fit_resident_lowers_the_loss_and_logs_every_term(layout, records, x_val):
    model = _model(layout)
    x = records(512, seed=0)
    before = float(np.mean(keras.ops.convert_to_numpy(model(x_val, training=False)["score"])))
    history = fit_resident(model, x, batch_size=64, epochs=6, validation_data=x_val, seed=1).history
    after = float(np.mean(keras.ops.convert_to_numpy(model(x_val, training=False)["score"])))
    assert after < before - 0.5, (before, after)
    for key in ("loss", "reconstruction_nll", "kl", "elbo", "val_loss", "val_kl"):
        assert len(history[key]) == 6 and np.all(np.isfinite(history[key])), key
    # The trackers are per-epoch means, reset each epoch: loss = recon + beta * kl.
    np.testing.assert_allclose(
        history["loss"], np.add(history["reconstruction_nll"], history["kl"]), rtol=1e-5
    )
    assert history["loss"][-1] < history["loss"][0]


@jax_only
def test_fit_resident_is_deterministic_and_follows_kl_warmup(layout, records):
    x = records(256, seed=0)
    runs = []
    for _ in range(2):
        model = _model(layout, kl_warmup_epochs=4)
        history = fit_resident(model, x, batch_size=32, epochs=4, callbacks=[KLWarmup()], seed=7)
        runs.append((history.history, model.get_weights()))
    np.testing.assert_allclose(runs[0][0]["beta"], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(runs[0][0]["loss"], runs[1][0]["loss"])
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


@jax_only
def test_fused_steps_per_execution_matches_one_step_per_call(layout, records):
    """Fusing 4 steps in one lax.scan trains exactly like 4 separate compiled steps.

    200 rows in batches of 32 give 7 batches per epoch: one fused group of 4, then a ragged
    group of 3 (two full batches and the short last one) that takes the per-step path.
    """
    x = records(200, seed=0)
    results = []
    for spe in (1, 4):
        model = VAE(layout.to_config(), latent_dim=3, hidden_units=(16,), seed=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=spe)
        np.random.seed(0)  # Keras' array shuffling draws from the global numpy RNG
        history = model.fit(x, batch_size=32, epochs=2, verbose=0, shuffle=True)
        results.append((history.history["loss"], model.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@jax_only
def test_fit_vae_device_resident_saves_the_best_model(layout, records, x_val, tmp_path):
    model = VAE(layout.to_config(), latent_dim=3, hidden_units=(16,), seed=3)
    lines: list[str] = []
    history = fit_vae(
        model,
        records(512, seed=0),
        x_val,
        epochs=5,
        learning_rate=1e-2,
        patience=2,
        checkpoint_dir=tmp_path,
        batch_size=64,
        print_fn=lines.append,
        device_resident=True,
    )
    assert len(lines) == len(history.history["loss"]) >= 3
    assert "recon=" in lines[0] and "val:" in lines[0]
    saved = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(saved(x_val)["score"]),
        keras.ops.convert_to_numpy(model(x_val)["score"]),
        rtol=1e-5,
    )


class _Killed(RuntimeError):
    pass


class _KillAfterEpoch(keras.callbacks.Callback):
    """Stands in for SIGKILL: ends the process's training after `epoch` (0-based) is saved."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed(f"killed after epoch {epoch + 1}")


@jax_only
def test_device_resident_training_resumes_to_the_same_model(layout, records, x_val, tmp_path):
    """Killed after epoch 2 of 4 and started again, it ends where an unbroken run ends."""
    x = records(384, seed=0)

    def train(run: str, callbacks=()):
        model = VAE(layout.to_config(), latent_dim=3, hidden_units=(16,), seed=3)
        fit_vae(model, x, x_val, epochs=4, learning_rate=1e-2, patience=10,
                checkpoint_dir=tmp_path / run / "ckpt", batch_size=64, print_fn=None,
                resume_dir=str(tmp_path / run / "resume"), device_resident=True,
                callbacks=callbacks)  # fmt: skip
        return model

    unbroken = train("unbroken")
    with pytest.raises(_Killed):
        train("killed", [_KillAfterEpoch(1)])
    seen: list[int] = []
    resumed = train(
        "killed", [keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: seen.append(e))]
    )
    assert seen == [2, 3]  # it resumed after epoch 2, it did not start again
    for a, b in zip(unbroken.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
