"""A tiny model and encoding for the archive tests (built in-process, seeded; no Beam)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.tabular_encoding import CategoricalSpec, NumericSpec, TabularEncoding

ENCODING = TabularEncoding(
    numeric=(
        NumericSpec("amount", 10.0, 50.0),
        NumericSpec("rate", 0.5, 0.3),
        NumericSpec("wild", 0.0, 1.0),
        NumericSpec("count", 3.0, 5.0),
    ),
    categorical=(
        CategoricalSpec("city", ("paris", "rome", "oslo")),
        CategoricalSpec("level", ("1", "2", "3"), integer=True),
    ),
)


def typed_frame(n: int, seed: int) -> pd.DataFrame:
    """Typed rows as `apply_kinds` gives them: heavy tails, zeros, negatives, huge and tiny
    magnitudes, short decimals, integers, missing values, unseen categories."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "rome", "oslo"], n, p=[0.6, 0.3, 0.1]).astype(object)
    city[rng.random(n) < 0.05] = None
    unseen = rng.random(n) < 0.03
    city[unseen] = [f"new-{i % 7}-é" for i in range(int(unseen.sum()))]
    level = rng.choice(["1", "2", "3", "17"], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    level[rng.random(n) < 0.05] = None
    amount = np.round(rng.lognormal(3, 2, n), 2) * np.where(city == "rome", 3, 1)
    amount[rng.random(n) < 0.2] = 0.0
    wild = rng.standard_cauchy(n) * 10.0 ** rng.integers(-300, 300, n)
    wild[rng.random(n) < 0.05] = rng.choice([0.0, -0.0, 5e-324, 1.7e308, -1.7e308])
    wild[rng.random(n) < 0.1] = np.nan
    rate = np.round(rng.uniform(0, 1, n), 2)
    rate[rng.random(n) < 0.3] = 1.0
    count = rng.poisson(3, n).astype(np.float64)
    count[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {"amount": amount, "rate": rate, "wild": wild, "count": count, "city": city,
         "level": level}
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_model():
    """A seeded VAE over ENCODING, fitted for a few epochs on typed_frame rows."""
    import keras

    from vae_model import VAE

    keras.utils.set_random_seed(0)
    model = VAE(ENCODING.layout(), latent_dim=3, hidden_units=(16,), seed=0)
    x = ENCODING.encode(typed_frame(1500, seed=1))
    x = np.nan_to_num(x, nan=0.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x, epochs=8, batch_size=128, verbose=0)
    return model


@pytest.fixture(scope="session")
def encoding():
    return ENCODING


@pytest.fixture(scope="session")
def frame_of():
    return typed_frame
