"""pipeline.scoring.calibration: the threshold is the (1 - target_fpr) quantile of the model's
own calibration scores, baselines are median feature NLLs, and the int8 code scale covers the
latent range with headroom. Checked against a tiny seeded VAE."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from configs.schema import ScoringConfig, VaepipeConfig
from pipeline.scoring.calibration import CODE_HEADROOM, calibrate, threshold_for
from pipeline.scoring.core import score_batches
from vae_model import VAE, FeatureLayout, pack

LAYOUT = FeatureLayout(numeric=("a", "b"), categorical=(("c", 3),))
LATENT = 2
CONFIG = VaepipeConfig(scoring=ScoringConfig(target_fpr=0.1, batch_size=16))


@pytest.fixture(scope="module")
def model() -> VAE:
    keras.utils.set_random_seed(0)
    return VAE(LAYOUT.to_config(), latent_dim=LATENT, hidden_units=(8,), seed=0)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    rng = np.random.default_rng(1)
    n = 70
    values = np.stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 2, n)], axis=1)
    mask = rng.random(values.shape) > 0.1
    return pack(np.where(mask, values, 0.0), mask)


def test_threshold_for_is_the_linear_quantile():
    scores = np.arange(100, dtype=np.float64)  # 0 .. 99
    assert threshold_for(scores, 0.1) == pytest.approx(89.1)  # 0.9 * 99
    assert threshold_for(scores, 0.5) == pytest.approx(49.5)
    assert threshold_for(np.array([3.0]), 0.01) == 3.0


def test_threshold_for_leaves_about_the_target_share_above_it():
    scores = np.sort(np.random.default_rng(0).gamma(2.0, size=10_000))
    for fpr in (0.01, 0.05, 0.2):
        above = np.mean(scores > threshold_for(scores, fpr))
        assert above == pytest.approx(fpr, abs=1e-3)


def test_calibration_is_computed_from_the_models_own_scores(model, rows):
    calibration, scores = calibrate(model, [rows], CONFIG)
    own = score_batches(model, rows, CONFIG.scoring.batch_size)

    np.testing.assert_allclose(scores, np.sort(own["score"].astype(np.float64)))
    assert np.all(np.diff(scores) >= 0)
    assert calibration.n_calibration == len(rows) == len(scores)
    assert calibration.target_fpr == 0.1
    assert calibration.threshold == pytest.approx(np.quantile(own["score"], 0.9), rel=1e-6)
    np.testing.assert_allclose(
        calibration.feature_baseline, np.median(own["feature_nll"], axis=0), rtol=1e-6
    )
    assert len(calibration.feature_baseline) == len(LAYOUT.to_config()["numeric"]) + 1


def test_code_scale_covers_the_latent_range_with_headroom(model, rows):
    calibration, _ = calibrate(model, [rows], CONFIG)
    z = score_batches(model, rows, CONFIG.scoring.batch_size)["z_mean"]
    scale = np.asarray(calibration.code_scale)
    assert scale.shape == (LATENT,)
    # The largest |z| of each dimension sits CODE_HEADROOM inside the int8 range.
    np.testing.assert_allclose(scale * 127 / CODE_HEADROOM, np.abs(z).max(axis=0), rtol=1e-6)
    assert (np.abs(np.rint(z / scale)) <= 127 / CODE_HEADROOM + 1).all()


def test_batches_of_any_size_give_the_same_calibration(model, rows):
    whole, whole_scores = calibrate(model, [rows], CONFIG)
    parts, part_scores = calibrate(model, [rows[:5], rows[5:40], rows[40:]], CONFIG)
    np.testing.assert_allclose(part_scores, whole_scores, rtol=1e-5)
    assert parts.threshold == pytest.approx(whole.threshold, rel=1e-5)
    np.testing.assert_allclose(parts.code_scale, whole.code_scale, rtol=1e-5)


def test_a_lower_target_fpr_gives_a_higher_threshold(model, rows):
    strict = VaepipeConfig(scoring=ScoringConfig(target_fpr=0.01, batch_size=16))
    loose, _ = calibrate(model, [rows], CONFIG)
    tight, scores = calibrate(model, [rows], strict)
    assert tight.threshold > loose.threshold
    assert tight.threshold <= scores[-1]
