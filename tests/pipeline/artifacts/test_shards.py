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


def test_rows_in_memory_shuffle_like_one_shard_file(tmp_path):
    """The API trains on `rows_epoch_dataset`: for rows held in one shard file it yields the
    Beam job's batches, epoch by epoch."""
    import tensorflow as tf

    rows = np.arange(60, dtype=np.float32).reshape(20, 3)
    with tf.io.TFRecordWriter(str(tmp_path / "part-00000.tfrecord")) as writer:
        writer.write(rows.tobytes())
    pattern = str(tmp_path / "*.tfrecord")
    from_file = [b.numpy() for b in shards.epoch_dataset(pattern, 3, 8, 7, 0, 2)]
    in_memory = [b.numpy() for b in shards.rows_epoch_dataset(rows, 8, 7, 2)]
    assert [len(b) for b in in_memory] == [8, 8, 4, 8, 8, 4]  # epochs do not share a batch
    assert all(np.array_equal(a, b) for a, b in zip(from_file, in_memory, strict=True))
    first, second = np.concatenate(in_memory[:3]), np.concatenate(in_memory[3:])
    assert sorted(first[:, 0]) == sorted(rows[:, 0]) and not np.array_equal(first, second)
    validation = [b.numpy() for b in shards.rows_dataset(rows, 8)]
    assert np.array_equal(np.concatenate(validation), rows)  # in row order
