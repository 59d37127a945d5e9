"""Training behaviour, KL warm-up, logging, checkpoints and input kinds."""

import re

import keras
import numpy as np
import pytest

from vae_model import VAE, KLWarmup, fit_vae


def test_training_lowers_validation_negative_elbo(trained, numpy_terms):
    after = float(np.mean(numpy_terms(trained.model.score_terms(trained.x_val))["score"]))
    assert after < trained.val_score_before - 0.5
    val_elbo = trained.history.history["val_elbo"]
    assert max(val_elbo) > val_elbo[0]
    assert all(np.isfinite(trained.history.history["loss"]))


def test_kl_is_positive_and_matches_closed_form_from_encode(trained, numpy_terms):
    kl = numpy_terms(trained.model.score_terms(trained.x_val))["kl"]
    z_mean, z_log_var = (keras.ops.convert_to_numpy(t) for t in trained.model.encode(trained.x_val))
    closed_form = 0.5 * np.sum(np.exp(z_log_var) + z_mean**2 - 1.0 - z_log_var, axis=-1)
    np.testing.assert_allclose(kl, closed_form, rtol=1e-4, atol=1e-5)
    assert kl.mean() > 1e-3


def test_anomalies_score_higher_than_normal_rows(trained, records, numpy_terms):
    normal = numpy_terms(trained.model.score_terms(records(200, seed=8)))["score"]
    shifted = numpy_terms(trained.model.score_terms(records(50, seed=9, shift=8.0)))["score"]
    assert np.median(shifted) > np.percentile(normal, 99)
    assert np.mean(shifted > np.percentile(normal, 95)) >= 0.9


def test_kl_warmup_ramps_logged_beta(trained):
    beta = trained.history.history["beta"]
    assert beta[0] == pytest.approx(1 / 3)
    assert beta[0] < beta[1] < beta[2] == pytest.approx(1.0)
    assert float(keras.ops.convert_to_numpy(trained.model.kl_weight)) == 1.0


def test_klwarmup_schedule():
    assert [KLWarmup(4).kl_weight_for_epoch(e) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert KLWarmup(0).kl_weight_for_epoch(0) == 1.0
    with pytest.raises(ValueError, match="Received: kl_warmup_epochs=-1"):
        KLWarmup(-1)


def test_epoch_logger_prints_one_line_per_epoch(trained):
    assert len(trained.lines) == len(trained.history.epoch)
    number = r"-?\d+\.\d{4}"
    pattern = (
        rf"epoch 1/12  train: recon={number} kl={number} elbo={number} beta=0\.3333  "
        rf"val: recon={number} kl={number} elbo={number}"
    )
    assert re.fullmatch(pattern, trained.lines[0]), trained.lines[0]


def test_best_checkpoint_reloads_safely_with_identical_scores(trained, numpy_terms):
    assert not (trained.checkpoint_dir / "best.inprogress.keras").exists()
    loaded = keras.saving.load_model(trained.checkpoint_dir / "best.keras", safe_mode=True)
    assert isinstance(loaded, VAE)
    assert loaded.get_config() == trained.model.get_config()
    for mc_samples in (0, 3):
        expected = numpy_terms(trained.model.score_terms(trained.x_val, mc_samples))
        got = numpy_terms(loaded.score_terms(trained.x_val, mc_samples))
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])


def test_divergence_raises_and_saves_nothing(layout, records, tmp_path):
    x = records(64, seed=10)
    x[:, 0] = np.where(x[:, layout.width] > 0, 1e30, 0.0)  # overflows the Gaussian NLL
    model = VAE(layout.to_config(), latent_dim=2, hidden_units=(4,))
    with pytest.raises(FloatingPointError, match=r"loss became NaN at epoch 1; the model was not"):
        fit_vae(model, x, x, 3, 1e-3, 1, tmp_path, batch_size=32, print_fn=None)
    assert list(tmp_path.iterdir()) == []


def _tf_dataset(x):
    tf = pytest.importorskip("tensorflow", reason="tf.data input needs TensorFlow installed")

    return tf.data.Dataset.from_tensor_slices(x).batch(50)


class _ArrayBatches(keras.utils.PyDataset):
    """Re-iterable batches, the portable replacement for a Python generator."""

    def __init__(self, x, batch_size=50):
        super().__init__()
        self.x, self.batch_size = x, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        return self.x[i * self.batch_size : (i + 1) * self.batch_size]


@pytest.mark.parametrize("wrap", [_tf_dataset, _ArrayBatches], ids=["tf_data", "py_dataset"])
def test_streaming_inputs(layout, records, tmp_path, wrap):
    model = VAE(layout.to_config(), latent_dim=2, hidden_units=(8,), kl_warmup_epochs=2)
    history = fit_vae(
        model,
        wrap(records(150, seed=11)),
        wrap(records(60, seed=12)),
        2,
        5e-3,
        2,
        tmp_path,
        print_fn=None,
    )
    assert history.history["beta"] == pytest.approx([0.5, 1.0])
    assert np.isfinite(history.history["val_loss"]).all()
    assert (tmp_path / "best.keras").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_data": None}, "val_data is required"),
        ({"epochs": 0}, "Received: epochs=0"),
        ({"learning_rate": 0.0}, "Received: learning_rate=0.0"),
        ({"patience": -1}, "Received: patience=-1"),
    ],
)
def test_fit_vae_rejects_bad_arguments(small_model, records, tmp_path, kwargs, message):
    x = records(8, seed=0)
    args = {"val_data": x, "epochs": 1, "learning_rate": 1e-3, "patience": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_vae(small_model, x, checkpoint_dir=tmp_path, **args)
