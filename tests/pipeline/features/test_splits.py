"""split_of: deterministic, the fractions respected, the seed changes the split."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from configs import load_config
from pipeline.core.records import RecordChunk
from pipeline.features.splits import split_mask, split_of, train_rows

IDS = [f"r{i}" for i in range(20_000)]


def test_split_of_is_deterministic():
    assert [split_of(r, 0.1, 0.2, 5) for r in IDS[:500]] == [
        split_of(r, 0.1, 0.2, 5) for r in IDS[:500]
    ]


def test_fractions_are_respected():
    counts = Counter(split_of(r, 0.1, 0.2, 0) for r in IDS)
    # binomial standard deviation at n = 20000 is under 0.003
    assert abs(counts["validation"] / len(IDS) - 0.1) < 0.012
    assert abs(counts["calibration"] / len(IDS) - 0.2) < 0.012
    assert abs(counts["train"] / len(IDS) - 0.7) < 0.012


def test_the_seed_changes_the_split():
    a = [split_of(r, 0.1, 0.2, 0) for r in IDS[:2000]]
    b = [split_of(r, 0.1, 0.2, 1) for r in IDS[:2000]]
    changed = sum(x != y for x, y in zip(a, b, strict=True)) / len(a)
    assert 0.2 < changed < 0.7  # independent splits differ on 1 - (.7² + .1² + .2²) = 46%


def test_zero_fractions_put_everything_in_train():
    assert {split_of(r, 0.0, 0.0, 0) for r in IDS[:300]} == {"train"}


def test_split_mask_and_train_rows_agree_with_split_of():
    train = load_config().train
    ids = IDS[:400]
    mask = split_mask(ids, "train", train)
    expected = [split_of(r, train.validation_fraction, train.calibration_fraction, train.seed)
                == "train" for r in ids]  # fmt: skip
    assert mask.tolist() == expected
    chunk = RecordChunk("s", ids, ids, pd.DataFrame({"x": np.arange(400)}))
    (kept,) = train_rows(chunk, train)
    assert kept.record_ids == [r for r, m in zip(ids, mask, strict=True) if m]
    assert train_rows(chunk.take(~mask), train) == []
