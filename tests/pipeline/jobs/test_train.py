"""How the training job sizes its batches for small train splits (train.min_steps_per_epoch)."""

from __future__ import annotations

import math

import pytest

from configs.schema import TrainConfig
from pipeline.jobs.train import MIN_BATCH_SIZE, effective_batch_size


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (100_000, 256),  # large splits keep train.batch_size
        (2_048, 256),  # exactly 8 steps at 256
        (2_049, 256),
        (1_000, 125),  # 8 steps of 125
        (196, 25),  # ADBench Ionosphere's train split: 8 steps instead of 1
        (50, MIN_BATCH_SIZE),  # never below 16 rows: 4 steps
    ],
)
def test_small_train_splits_get_smaller_batches_for_enough_steps(rows, expected):
    train = TrainConfig(batch_size=256, min_steps_per_epoch=8)
    batch = effective_batch_size(rows, train)
    assert batch == expected
    if expected > MIN_BATCH_SIZE:
        assert math.ceil(rows / batch) >= 8


def test_one_step_per_epoch_keeps_the_configured_batch_and_a_small_batch_is_kept():
    assert effective_batch_size(196, TrainConfig(batch_size=256, min_steps_per_epoch=1)) == 196
    assert effective_batch_size(100, TrainConfig(batch_size=8, min_steps_per_epoch=8)) == 8
