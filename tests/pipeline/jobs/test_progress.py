"""pipeline.jobs.progress: silent when stderr is not a terminal; in a terminal a spinner wraps a
block and an epoch bar survives a real (tiny) training run."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest

from pipeline.jobs import progress
from vae_model import VAE, FeatureLayout, fit_vae, pack

LAYOUT = FeatureLayout(numeric=("a", "b"), categorical=(("c", 3),))


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


@pytest.fixture
def not_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)


def packed(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 2, n)], axis=1)
    return pack(values, np.ones_like(values, dtype=bool))


def test_non_interactive_job_status_is_a_no_op(not_terminal, capsys):
    ran = []
    with progress.job_status("scoring"):
        ran.append(True)
    assert ran == [True]
    assert capsys.readouterr().err == ""


def test_non_interactive_epoch_progress_is_none(not_terminal):
    assert not progress.interactive()
    assert progress.epoch_progress(5) is None


def test_interactive_job_status_wraps_the_block_and_passes_errors_on(terminal):
    assert progress.interactive()
    ran = []
    with progress.job_status("scoring"):
        ran.append(True)
    assert ran == [True]
    with pytest.raises(RuntimeError, match="job failed"), progress.job_status("scoring"):
        raise RuntimeError("job failed")


def test_interactive_epoch_progress_survives_a_two_epoch_fit(terminal, tmp_path):
    callback = progress.epoch_progress(2)
    assert isinstance(callback, keras.callbacks.Callback)
    keras.utils.set_random_seed(0)
    model = VAE(LAYOUT.to_config(), latent_dim=2, hidden_units=(8,), seed=0)
    history = fit_vae(
        model, packed(64, 1), packed(32, 2), epochs=2, learning_rate=1e-3, patience=2,
        checkpoint_dir=tmp_path, callbacks=[callback], batch_size=32, print_fn=None,
    )  # fmt: skip
    assert len(history.history["loss"]) == 2
    task = callback._bar.tasks[0]
    assert task.total == 2 and task.completed == 2
    assert task.fields["terms"].startswith("val ELBO ")
    assert not callback._bar.live.is_started  # stopped at the end of training
