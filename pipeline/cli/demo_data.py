"""A built-in synthetic table for `vaepipe demo`: mixed types, missing values, labelled anomalies.

Normal records follow a few dependent relations (a load that drives temperature and power, a
region that shifts the price), so a good model must learn structure, not only ranges. Anomalies
break one relation each, the way real faults do, rather than being outliers in one column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ("north", "south", "east", "west", "central")
REGION_PRICE = {"north": 1.0, "south": 1.3, "east": 0.8, "west": 1.1, "central": 1.5}


def synthetic_table(rows: int, anomaly_rate: float, seed: int) -> pd.DataFrame:
    """`rows` records with columns id, numeric/categorical features, and `label` (1 = anomaly)."""
    rng = np.random.default_rng(seed)
    load = rng.gamma(shape=4.0, scale=10.0, size=rows)
    region = rng.choice(REGIONS, size=rows, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    frame = pd.DataFrame(
        {
            "id": [f"r{seed}-{i:07d}" for i in range(rows)],
            "load": load,
            "temperature": 20.0 + 0.5 * load + rng.normal(0, 2.0, rows),
            "power": 3.0 * load + rng.normal(0, 5.0, rows),
            "price": np.array([REGION_PRICE[r] for r in region]) * (10 + rng.normal(0, 0.5, rows)),
            "latency_ms": rng.lognormal(mean=3.0, sigma=0.6, size=rows),
            "region": region,
            "tier": rng.choice(["basic", "pro"], size=rows, p=[0.7, 0.3]),
            "is_weekend": (rng.random(rows) < 2 / 7).astype(int),
        }
    )
    frame["label"] = 0
    anomalous = rng.random(rows) < anomaly_rate
    _inject(frame, np.flatnonzero(anomalous), rng)
    _knock_out(frame, rng, fraction=0.02)
    return frame


def _inject(frame: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Break one relation per anomalous row: hot at low load, wrong price, dead power, ..."""
    kinds = rng.integers(0, 4, size=len(rows))
    for row, kind in zip(rows, kinds, strict=False):
        if kind == 0:
            frame.loc[row, "temperature"] += rng.choice([-1, 1]) * rng.uniform(15, 30)
        elif kind == 1:
            frame.loc[row, "price"] *= rng.choice([0.4, 2.2])
        elif kind == 2:
            frame.loc[row, "power"] = rng.uniform(0, 5)
        else:
            frame.loc[row, "latency_ms"] *= rng.uniform(20, 60)
    frame.loc[rows, "label"] = 1


def _knock_out(frame: pd.DataFrame, rng: np.random.Generator, fraction: float) -> None:
    """Blank a few values: missing data is normal and must be scored, not rejected."""
    for column in ("temperature", "price", "region", "tier"):
        hit = rng.random(len(frame)) < fraction
        frame[column] = frame[column].astype(object)
        frame.loc[hit, column] = None
