"""VAE construction, config, shapes and deterministic scoring (untrained model)."""

import json

import keras
import numpy as np
import pytest

from vae_model import VAE, FeatureLayout, fit_vae, pack
from vae_model.model import exact_float32_matmuls


def to_numpy(terms):
    return {k: keras.ops.convert_to_numpy(v) for k, v in terms.items()}


# Scores of the same record computed in batches of different sizes may differ in the
# last float32 bits (matmul kernels block differently), never more.
BATCH_TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latent_dim": 0}, "latent_dim must be positive. Received: latent_dim=0"),
        ({"hidden_units": (8, -1)}, "hidden_units must be positive. Received: hidden_units=-1"),
        ({"hidden_units": "64"}, "hidden_units must be a sequence"),
        ({"activation": "nope"}, "Unknown activation. Received: activation='nope'"),
        ({"beta": -0.5}, "beta must be a non-negative number. Received: beta=-0.5"),
        ({"kl_warmup_epochs": -1}, "Received: kl_warmup_epochs=-1"),
        ({"min_log_var": 2.0, "max_log_var": 1.0}, "min_log_var=2.0, max_log_var=1.0"),
        ({"seed": 1.5}, "Received: seed=1.5"),
    ],
)
def test_invalid_args_raise_with_echoed_values(layout, kwargs, message):
    with pytest.raises(ValueError) as err:
        VAE(layout.to_config(), **kwargs)
    assert message in str(err.value)


def test_get_config_round_trips(layout, small_model):
    config = small_model.get_config()
    json.dumps(config)  # must be JSON-serializable for the .keras format
    assert config["layout"] == layout.to_config()
    assert config["hidden_units"] == [8] and config["latent_dim"] == 3 and config["seed"] == 1
    assert VAE.from_config(config).get_config() == config


def test_accepts_layout_object_and_builds_eagerly(layout):
    model = VAE(layout, latent_dim=2, hidden_units=(4,))
    assert model.built
    assert model.get_config()["layout"] == layout.to_config()
    # Every weight exists before any data has been seen (needed to load weights).
    assert len(model.trainable_weights) == 2 * 7  # 7 Dense layers: kernel + bias


def test_output_shapes(records, small_model, layout):
    x = records(5, seed=0)
    z_mean, z_log_var = small_model.encode(x)
    assert tuple(z_mean.shape) == (5, 3) and tuple(z_log_var.shape) == (5, 3)
    decoded = small_model.decode(z_mean)
    assert tuple(decoded["numeric_mu"].shape) == (5, layout.n_numeric)
    assert tuple(decoded["numeric_log_var"].shape) == (5, layout.n_numeric)
    assert tuple(decoded["categorical_logits"].shape) == (5, 4)  # all features side by side
    terms = to_numpy(small_model(x))
    assert {k: v.shape for k, v in terms.items()} == {
        "score": (5,),
        "reconstruction_nll": (5,),
        "kl": (5,),
        "feature_nll": (5, layout.width),
        "z_mean": (5, 3),
    }


def test_reconstruct_from_code_uses_packed_value_convention(layout, small_model):
    values = small_model.reconstruct_from_code(np.random.default_rng(0).normal(size=(6, 3)))
    assert isinstance(values, np.ndarray) and values.shape == (6, layout.width)
    categories = values[:, layout.n_numeric]
    np.testing.assert_array_equal(categories, np.round(categories))
    assert categories.min() >= 0 and categories.max() < 4


@pytest.mark.parametrize("mc_samples", [0, 4])
def test_score_terms_are_deterministic_and_batch_independent(records, small_model, mc_samples):
    x = records(64, seed=3)
    first = to_numpy(small_model.score_terms(x, mc_samples))
    second = to_numpy(small_model.score_terms(x, mc_samples))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    # Record 10 alone, and inside a different (shuffled, smaller) batch.
    alone = to_numpy(small_model.score_terms(x[10:11], mc_samples))["score"]
    other = to_numpy(small_model.score_terms(x[[33, 10, 2]], mc_samples))["score"]
    np.testing.assert_allclose(alone[0], first["score"][10], **BATCH_TOL)
    np.testing.assert_allclose(other[1], first["score"][10], **BATCH_TOL)


def test_mc_scoring_differs_from_mean_decoding(records, small_model):
    x = records(16, seed=4)
    at_mean = to_numpy(small_model.score_terms(x))
    sampled = to_numpy(small_model.score_terms(x, mc_samples=8))
    np.testing.assert_array_equal(at_mean["kl"], sampled["kl"])  # KL is closed form
    assert not np.allclose(at_mean["reconstruction_nll"], sampled["reconstruction_nll"])
    with pytest.raises(ValueError, match="Received: mc_samples=-1"):
        small_model.score_terms(x, mc_samples=-1)


def test_stochastic_call_samples_but_default_call_does_not(records, small_model):
    x = records(16, seed=5)
    a = to_numpy(small_model(x, training=True))["reconstruction_nll"]
    b = to_numpy(small_model(x, training=True))["reconstruction_nll"]
    assert not np.array_equal(a, b)
    c = to_numpy(small_model(x))["score"]
    np.testing.assert_array_equal(c, to_numpy(small_model.score_terms(x))["score"])


def test_missing_features_contribute_nothing(small_model):
    values = np.array([[np.nan, 0.5, 2.0], [0.0, 0.0, 0.0]])  # NaN placeholder, all-missing
    mask = np.array([[0, 1, 1], [0, 0, 0]])
    terms = to_numpy(small_model.score_terms(pack(values, mask)))
    assert np.all(np.isfinite(terms["score"]))
    assert terms["feature_nll"][0, 0] == 0.0
    np.testing.assert_array_equal(terms["feature_nll"][1], np.zeros(3))
    np.testing.assert_allclose(terms["score"][1], terms["kl"][1], rtol=1e-6)


def test_predict_returns_score_dict(records, small_model):
    x = records(70, seed=6)
    expected = to_numpy(small_model.score_terms(x))
    predicted = small_model.predict(x, batch_size=32, verbose=0)
    assert isinstance(predicted, dict) and set(predicted) == set(expected)
    for key in expected:
        assert isinstance(predicted[key], np.ndarray)
        np.testing.assert_allclose(predicted[key], expected[key], **BATCH_TOL)
    on_batch = small_model.predict_on_batch(x[:8])
    np.testing.assert_allclose(on_batch["score"], expected["score"][:8], **BATCH_TOL)


def test_score_mc_samples_attribute_drives_predict(records, small_model):
    x = records(20, seed=7)
    small_model.predict(x, verbose=0)  # compile and cache a K=0 predict function
    small_model.score_mc_samples = 3
    expected = to_numpy(small_model.score_terms(x, mc_samples=3))["score"]
    np.testing.assert_allclose(small_model.predict(x, verbose=0)["score"], expected, **BATCH_TOL)
    with pytest.raises(ValueError, match="Received: score_mc_samples=-2"):
        small_model.score_mc_samples = -2


def test_scoring_function_is_the_predict_graph_traced_once(records, small_model):
    x = records(37, seed=8)
    score = small_model.scoring_function(jit_compile=False)
    assert small_model.scoring_function(jit_compile=False) is score  # cached: traced once
    terms = to_numpy(score(x))
    expected = to_numpy(small_model.predict_on_batch(x))
    assert set(terms) == set(expected)
    for key in expected:  # the same graph on the same batch: the same bits
        np.testing.assert_array_equal(terms[key], expected[key], err_msg=key)
    # Any batch size, one function (no retracing per shape).
    np.testing.assert_allclose(to_numpy(score(x[:5]))["score"], terms["score"][:5], **BATCH_TOL)


def test_scoring_function_follows_score_mc_samples(records, small_model):
    x = records(12, seed=9)
    at_mean = small_model.scoring_function()
    np.testing.assert_allclose(
        to_numpy(at_mean(x))["score"], to_numpy(small_model.score_terms(x))["score"], rtol=1e-6
    )
    small_model.score_mc_samples = 3
    sampled = small_model.scoring_function()
    assert sampled is not at_mean
    expected = to_numpy(small_model.score_terms(x, mc_samples=3))["score"]
    np.testing.assert_allclose(to_numpy(sampled(x))["score"], expected, **BATCH_TOL)


def test_xla_scoring_function_agrees_within_float32_rounding(records, small_model):
    x = records(64, seed=10)
    plain = to_numpy(small_model.scoring_function(jit_compile=False)(x))
    compiled = to_numpy(small_model.scoring_function(jit_compile=True)(x))
    np.testing.assert_allclose(compiled["score"], plain["score"], rtol=1e-6, atol=1e-6)
    for key in plain:  # XLA's exp and log round differently in the last bits
        np.testing.assert_allclose(compiled[key], plain[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize(
    "single_layout",
    [
        FeatureLayout(numeric=("a",)),
        FeatureLayout(categorical=(("c", 4), ("d", 2))),
    ],
    ids=["numeric_only", "categorical_only"],
)
def test_single_type_layouts(single_layout):
    model = VAE(single_layout.to_config(), latent_dim=2, hidden_units=())
    x = np.zeros((3, single_layout.input_dim), np.float32)
    x[:, single_layout.width :] = 1.0
    terms = to_numpy(model.score_terms(x, mc_samples=2))
    assert terms["feature_nll"].shape == (3, single_layout.width)
    assert np.all(np.isfinite(terms["score"]))
    assert model.reconstruct_from_code(np.zeros((2, 2))).shape == (2, single_layout.width)


def test_metrics_are_the_loss_trackers(small_model):
    assert [m.name for m in small_model.metrics] == [
        "loss",
        "reconstruction_nll",
        "kl",
        "elbo",
        "beta",
    ]
    assert keras.ops.convert_to_numpy(small_model.kl_weight) == 1.0
    assert not small_model.kl_weight.trainable


@pytest.mark.parametrize("variance", ["record", "feature", "fixed"])
def test_numeric_variance_modes(layout, records, variance):
    """How the numeric log-variance is produced, checked against the Gaussian NLL by hand."""
    model = VAE(layout.to_config(), latent_dim=3, hidden_units=(8,), seed=1,
                numeric_variance=variance)  # fmt: skip
    x = records(16, seed=9)
    with exact_float32_matmuls():  # as scoring computes them (a GPU would use TF32 otherwise)
        z_mean, _ = model.encode(x)
        out = to_numpy(model.decode(z_mean))
    log_var = out["numeric_log_var"]
    if variance == "fixed":
        np.testing.assert_array_equal(log_var, 0.0)
    elif variance == "feature":  # one learned value per feature, the same for every record
        model.numeric_log_var.assign([0.5, -1.0])
        with exact_float32_matmuls():
            log_var = to_numpy(model.decode(z_mean))["numeric_log_var"]
        np.testing.assert_allclose(log_var, np.tile([[0.5, -1.0]], (16, 1)))
    else:  # decoded per record
        assert np.ptp(log_var, axis=0).max() > 0
    with exact_float32_matmuls():
        mu = to_numpy(model.decode(z_mean))["numeric_mu"]
    values, mask = x[:, :2], x[:, 3:5]
    expected = 0.5 * (np.log(2 * np.pi) + log_var + (values - mu) ** 2 * np.exp(-log_var)) * mask
    got = to_numpy(model.score_terms(x))["feature_nll"][:, :2]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    trainable = {v.path.split("/")[-1] for v in model.trainable_variables}
    assert ("numeric_log_var" in trainable) == (variance == "feature")
    assert VAE.from_config(model.get_config()).numeric_variance == variance


def test_numeric_variance_defaults_to_record_for_saved_configs(layout, small_model):
    """Models saved before the option existed have no key: they load as per-record variance."""
    config = small_model.get_config()
    config.pop("numeric_variance")
    assert VAE.from_config(config).numeric_variance == "record"
    with pytest.raises(ValueError, match="Received: numeric_variance='sometimes'"):
        VAE(layout.to_config(), numeric_variance="sometimes")


def test_score_tolerance_adds_to_the_scoring_variance_only(layout, records):
    """Scoring uses log(sigma^2 + tolerance^2); the training estimator ignores the tolerance."""
    kwargs = {"latent_dim": 3, "hidden_units": (8,), "seed": 1}
    plain = VAE(layout.to_config(), **kwargs)
    tolerant = VAE(layout.to_config(), score_tolerance=0.5, **kwargs)
    tolerant.set_weights(plain.get_weights())
    x = records(32, seed=4)
    with exact_float32_matmuls():  # as scoring computes them (a GPU would use TF32 otherwise)
        z_mean, _ = tolerant.encode(x)
        out = to_numpy(tolerant.decode(z_mean))
    variance = np.exp(out["numeric_log_var"]) + 0.25
    values, mask = x[:, :2], x[:, 3:5]
    residual = (values - out["numeric_mu"]) ** 2
    expected = 0.5 * (np.log(2 * np.pi) + np.log(variance) + residual / variance) * mask
    got = to_numpy(tolerant.score_terms(x))
    np.testing.assert_allclose(got["feature_nll"][:, :2], expected, rtol=1e-4, atol=1e-5)
    base = to_numpy(plain.score_terms(x))
    np.testing.assert_allclose(got["feature_nll"][:, 2:], base["feature_nll"][:, 2:], rtol=1e-6)
    np.testing.assert_allclose(got["kl"], base["kl"], rtol=1e-6)
    assert not np.allclose(got["score"], base["score"])
    # The training estimator (same seed, so the same noise draw) ignores the tolerance.
    sampled_tolerant = to_numpy(tolerant(x, training=True))
    sampled_plain = to_numpy(plain(x, training=True))
    np.testing.assert_array_equal(sampled_tolerant["score"], sampled_plain["score"])
    assert VAE.from_config(tolerant.get_config()).score_tolerance == 0.5


def test_score_tolerance_is_off_for_saved_configs_and_checked(layout, small_model):
    config = small_model.get_config()
    config.pop("score_tolerance")
    assert VAE.from_config(config).score_tolerance == 0.0
    with pytest.raises(ValueError, match="Received: score_tolerance=-0.1"):
        VAE(layout.to_config(), score_tolerance=-0.1)


def test_trim_fraction_is_saved_off_for_old_configs_and_checked(layout, small_model):
    trimmed = VAE(layout.to_config(), latent_dim=3, hidden_units=(8,), trim_fraction=0.1)
    assert VAE.from_config(trimmed.get_config()).trim_fraction == 0.1
    config = small_model.get_config()
    config.pop("trim_fraction")
    assert VAE.from_config(config).trim_fraction == 0.0
    with pytest.raises(ValueError, match="trim_fraction must be below 0.5. Received: 0.5"):
        VAE(layout.to_config(), trim_fraction=0.5)


@pytest.mark.parametrize("start", [None, 0, 1, 4, 9])
def test_the_trim_starts_at_its_epoch_of_the_kl_warm_up(layout, start):
    from vae_model.training import KLWarmup

    model = VAE(layout.to_config(), latent_dim=2, hidden_units=(8,), kl_warmup_epochs=5,
                trim_fraction=0.05, trim_start_epoch=start)  # fmt: skip
    warmup = KLWarmup(5)
    first = 4 if start is None else min(start, 4)  # weight 1 from epoch 4 of 5 on
    for epoch in range(8):
        weight = np.float32(warmup.kl_weight_for_epoch(epoch))
        assert bool(model.trim_active(weight)) == (epoch >= first), epoch


def test_without_a_warm_up_the_trim_applies_from_the_first_epoch(layout):
    model = VAE(layout.to_config(), latent_dim=2, hidden_units=(8,), kl_warmup_epochs=0,
                trim_fraction=0.05, trim_start_epoch=3)  # fmt: skip
    assert bool(model.trim_active(np.float32(1.0)))


def test_trim_start_epoch_is_saved_absent_in_old_configs_and_checked(layout, small_model):
    early = VAE(layout.to_config(), latent_dim=3, hidden_units=(8,), trim_start_epoch=1)
    assert VAE.from_config(early.get_config()).trim_start_epoch == 1
    config = small_model.get_config()
    config.pop("trim_start_epoch")
    assert VAE.from_config(config).trim_start_epoch is None
    with pytest.raises(ValueError, match="trim_start_epoch"):
        VAE(layout.to_config(), trim_start_epoch=-1)


def test_a_trimmed_fit_learns_less_of_the_outliers_in_its_training_rows(layout, records, tmp_path):
    """Training rows with 5% outliers: leaving the worst-explained 10% of each batch out of
    the loss keeps the model from explaining them, so they score higher than with the plain
    ELBO (same seed, same batches)."""
    x = np.concatenate([records(950, seed=8), records(50, seed=9, shift=4.0)])
    outlier = np.arange(len(x)) >= 950
    gaps = {}
    for trim in (0.0, 0.1):
        keras.utils.set_random_seed(0)
        model = VAE(layout.to_config(), latent_dim=2, hidden_units=(16,), trim_fraction=trim,
                    kl_warmup_epochs=1, seed=3)  # fmt: skip
        history = fit_vae(model, x, records(100, seed=10), epochs=6, learning_rate=1e-2,
                          patience=6, checkpoint_dir=tmp_path / str(trim), batch_size=100,
                          print_fn=None)  # fmt: skip
        assert np.isfinite(history.history["loss"]).all()
        score = to_numpy(model(x, training=False))["score"]
        gaps[trim] = score[outlier].mean() - score[~outlier].mean()
    assert gaps[0.1] > gaps[0.0] > 0
