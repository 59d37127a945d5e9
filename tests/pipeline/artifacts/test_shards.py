"""Splits of the prepared data: stable per record id, the same from shards and features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs.schema import TrainConfig
from pipeline.artifacts import shards
from pipeline.core.records import RecordChunk
from pipeline.features import splits


def test_shards_and_features_split_records_identically():
    assert shards.split_of is splits.split_of and shards.split_mask is splits.split_mask
    ids = [f"r{i}" for i in range(5000)]
    train = TrainConfig(validation_fraction=0.1, calibration_fraction=0.2, seed=3)
    masks = {s: shards.split_mask(ids, s, train) for s in shards.SPLITS}
    assert (sum(masks.values()) == 1).all()  # every record in exactly one split
    assert abs(masks["calibration"].mean() - 0.2) < 0.02
    assert abs(masks["validation"].mean() - 0.1) < 0.02


def test_train_rows_keeps_a_chunks_train_split_only():
    ids = [f"r{i}" for i in range(200)]
    chunk = RecordChunk(
        "s.csv", ids, [f"raw{i}" for i in range(200)], pd.DataFrame({"x": np.arange(200.0)})
    )
    train = TrainConfig()
    [kept] = splits.train_rows(chunk, train)
    expected = [i for i in ids if splits.split_of(i, 0.1, 0.1, 0) == "train"]
    assert kept.record_ids == expected
    assert kept.frame["x"].tolist() == [float(i[1:]) for i in expected]
    none = chunk.take(~splits.split_mask(ids, "train", train))
    assert splits.train_rows(none, train) == []


def test_prepared_paths_name_the_column_decisions():
    assert shards.PreparedPaths("/w").columns == "/w/columns.json"
