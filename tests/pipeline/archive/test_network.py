"""The decoder as a float64 numpy function: it computes what the Keras decoder computes, on
coarse grids, the same for a record whatever batch it is in, and refuses what it cannot
reproduce."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.archive.network import LOG_GRID, MEAN_GRID, DecoderNet


def test_it_matches_the_keras_decoder(tiny_model):
    z = np.random.default_rng(0).normal(size=(64, tiny_model.latent_dim))
    ours = DecoderNet(tiny_model)(z)
    theirs = tiny_model.decode(z.astype(np.float32))
    assert np.allclose(ours.numeric_mean, np.asarray(theirs["numeric_mu"]), atol=1e-4)
    assert np.allclose(ours.numeric_log_var, np.asarray(theirs["numeric_log_var"]), atol=1e-3)
    logits = np.asarray(theirs["categorical_logits"])
    assert ours.logits.shape == logits.shape and np.allclose(ours.logits, logits, atol=1e-3)


def test_outputs_lie_on_their_grids_and_respect_the_clamp(tiny_model):
    out = DecoderNet(tiny_model)(np.random.default_rng(1).normal(size=(32, 3)) * 50)
    assert np.array_equal(out.numeric_mean / MEAN_GRID, np.rint(out.numeric_mean / MEAN_GRID))
    assert np.array_equal(out.logits / LOG_GRID, np.rint(out.logits / LOG_GRID))
    low, high = tiny_model.min_log_var, tiny_model.max_log_var
    assert out.numeric_log_var.min() >= low - LOG_GRID and out.numeric_log_var.max() <= high


def test_a_record_decodes_the_same_in_any_batch(tiny_model):
    net = DecoderNet(tiny_model)
    z = np.random.default_rng(2).normal(size=(200, 3))
    alone = net(z[7:8])
    together = net(z)
    assert np.array_equal(alone.numeric_mean[0], together.numeric_mean[7])
    assert np.array_equal(alone.logits[0], together.logits[7])


def test_an_activation_it_cannot_reproduce_is_refused():
    with pytest.raises(ValueError, match="supports models with activations"):
        DecoderNet(SimpleNamespace(activation="mish"))
