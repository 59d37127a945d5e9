"""Fixtures for the vae_model tests: a tiny seeded mixed dataset and one trained VAE.

Training happens once per session (a few seconds on 2 CPU cores) and is shared by
every test that needs a fitted model.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from vae_model import VAE, FeatureLayout, fit_vae, pack

# Two correlated numeric features and one categorical with 3 values + OOV bucket.
LAYOUT = FeatureLayout(numeric=("bytes", "duration"), categorical=(("proto", 4),))


def make_records(n: int, seed: int, shift: float = 0.0, missing_rate: float = 0.1) -> np.ndarray:
    """Packed synthetic records; ``shift`` moves both numeric features (in std units)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.8 * a + 0.6 * rng.normal(size=n)
    proto = np.digitize(a + 0.5 * rng.normal(size=n), [-0.5, 0.5])  # 0, 1 or 2
    values = np.stack([a + shift, b + shift, proto.astype(np.float64)], axis=1)
    mask = rng.random(values.shape) >= missing_rate
    return pack(np.where(mask, values, 0.0), mask)


def to_numpy(terms: dict) -> dict[str, np.ndarray]:
    """Converts a dict of backend tensors to numpy."""
    return {k: keras.ops.convert_to_numpy(v) for k, v in terms.items()}


# Helpers are handed out as fixtures: importing from a conftest.py is ambiguous when
# several test folders have one (and breaks under --import-mode=importlib).
@pytest.fixture(scope="session")
def records():
    """The `make_records` function."""
    return make_records


@pytest.fixture(scope="session")
def numpy_terms():
    """The `to_numpy` function."""
    return to_numpy


@dataclasses.dataclass
class Trained:
    model: VAE
    history: keras.callbacks.History
    lines: list[str]
    checkpoint_dir: object
    x_train: np.ndarray
    x_val: np.ndarray
    val_score_before: float


@pytest.fixture(scope="session")
def layout() -> FeatureLayout:
    return LAYOUT


@pytest.fixture(scope="session")
def x_val() -> np.ndarray:
    return make_records(200, seed=2)


@pytest.fixture
def small_model() -> VAE:
    """An untrained, small VAE (fresh per test: some tests mutate it)."""
    keras.utils.set_random_seed(0)
    return VAE(LAYOUT.to_config(), latent_dim=3, hidden_units=(8,), seed=1)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, x_val: np.ndarray) -> Trained:
    keras.utils.set_random_seed(0)
    x_train = make_records(400, seed=1)
    model = VAE(LAYOUT.to_config(), latent_dim=2, hidden_units=(32, 16), kl_warmup_epochs=3, seed=0)
    before = float(np.mean(to_numpy(model.score_terms(x_val))["score"]))
    lines: list[str] = []
    checkpoint_dir = tmp_path_factory.mktemp("vae_ckpt")
    history = fit_vae(
        model,
        x_train,
        x_val,
        epochs=12,
        learning_rate=5e-3,
        patience=4,
        checkpoint_dir=checkpoint_dir,
        batch_size=50,
        print_fn=lines.append,
    )
    return Trained(model, history, lines, checkpoint_dir, x_train, x_val, before)
