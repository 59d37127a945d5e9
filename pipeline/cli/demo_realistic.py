"""A realistic table, the kind a new user brings: skewed amounts, readings, a correlated pair,
counts, a category, a true/false column, timestamps, free text and a user id.

Only some of these columns can be modelled: the timestamps, the notes (one text per row) and
the user id (10,000 values) are left out by the training job, which says so. Every batch drawn
here comes from the same distribution, so a model trained on one should flag about its target
false-positive rate of another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CHANNELS = ("web", "store", "phone", "partner")
WORDS = ("late", "refund", "gift", "repeat", "fragile", "urgent", "bulk", "promo", "ok", "new")


def realistic_table(rows: int, seed: int, start: str = "2024-01-01") -> pd.DataFrame:
    """`rows` records: id, amount, reading, pair_a, pair_b, count, channel, verified, ts,
    note, user. Timestamps run forward from `start` (a later batch: a later start)."""
    rng = np.random.default_rng(seed)
    pair_a = rng.normal(50.0, 10.0, rows)
    seconds = np.sort(rng.uniform(0, 90 * 86400, rows))
    stamps = pd.Timestamp(start) + pd.to_timedelta(seconds.round(), unit="s")
    notes = [
        " ".join(rng.choice(WORDS, size=rng.integers(2, 6))) + f" #{rng.integers(1_000_000)}"
        for _ in range(rows)
    ]
    return pd.DataFrame(
        {
            "id": [f"s{seed}-{i:07d}" for i in range(rows)],
            "amount": rng.lognormal(mean=3.0, sigma=1.0, size=rows).round(2),
            "reading": rng.normal(20.0, 3.0, rows).round(3),
            "pair_a": pair_a.round(3),
            "pair_b": (0.8 * pair_a + rng.normal(0.0, 4.0, rows)).round(3),
            "count": rng.poisson(3.0, rows),
            "channel": rng.choice(CHANNELS, size=rows, p=[0.5, 0.25, 0.15, 0.1]),
            "verified": np.where(rng.random(rows) < 0.7, "true", "false"),
            "ts": stamps.strftime("%Y-%m-%dT%H:%M:%S"),
            "note": notes,
            "user": [f"u{u:05d}" for u in rng.integers(0, 10_000, rows)],
        }
    )
