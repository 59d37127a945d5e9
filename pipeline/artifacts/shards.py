"""The prepared training data: encoded float32 rows in TFRecord shards, one folder per split.

The training data job writes them (`WriteShards`, on Beam workers), the training driver reads
them back with tf.data (`shard_dataset`, `epoch_dataset`), so memory does not grow with the
data. Each TFRecord holds one block: a chunk's rows of one split as raw float32 bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from configs.schema import TrainConfig
from pipeline.core.records import EncodedChunk
from pipeline.features.splits import SPLITS, split_mask, split_of  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class PreparedPaths:
    """Where the training data job leaves its results (inside the work directory)."""

    root: str

    @property
    def statistics(self) -> str:
        return os.path.join(self.root, "statistics.pb")

    @property
    def schema(self) -> str:
        return os.path.join(self.root, "schema.pbtxt")

    @property
    def encoding(self) -> str:
        return os.path.join(self.root, "encoding.json")

    @property
    def dead_letter(self) -> str:
        return os.path.join(self.root, "dead_letter")

    @property
    def columns(self) -> str:
        """What became of each input column (modelled, left out, and why)."""
        return os.path.join(self.root, "columns.json")

    @property
    def record_columns(self) -> str:
        """The bundle's record_columns.json part: the input's columns, order and types."""
        return os.path.join(self.root, "record_columns.json")

    @property
    def marker(self) -> str:
        """Written last, holding the fingerprint of what was prepared (for resumed runs)."""
        return os.path.join(self.root, "PREPARED")

    def shards(self, split: str) -> str:
        return os.path.join(self.root, "shards", split)

    def shard_pattern(self, split: str) -> str:
        return os.path.join(self.shards(split), "*.tfrecord")


class WriteShards(beam.PTransform):
    """EncodedChunks -> TFRecord shards of each split under `paths`."""

    def __init__(self, paths: PreparedPaths, train: TrainConfig):
        super().__init__()
        self._paths = paths
        self._train = train

    def expand(self, encoded):
        for split in SPLITS:
            _ = (
                encoded
                | f"Select{split.title()}" >> beam.FlatMap(_rows_of_split, split, self._train)
                | f"Write{split.title()}Shards"
                >> beam.io.WriteToTFRecord(
                    os.path.join(self._paths.shards(split), "part"), file_name_suffix=".tfrecord"
                )
            )


def _rows_of_split(chunk: EncodedChunk, split: str, train: TrainConfig) -> Iterator[bytes]:
    """The chunk's rows that fall in `split`, as one serialized float32 block (or nothing)."""
    keep = split_mask(chunk.record_ids, split, train)
    if keep.any():
        yield np.ascontiguousarray(chunk.inputs[keep], dtype=np.float32).tobytes()


def shard_dataset(pattern: str, input_dim: int, batch_size: int):
    """Stream encoded shards as batches in file order (tf.data: bounded memory, any backend)."""
    return _blocks(pattern, input_dim).unbatch().batch(batch_size).prefetch(2)


def epoch_dataset(
    pattern: str, input_dim: int, batch_size: int, seed: int, first_epoch: int, epochs: int
):
    """Shuffled training batches for epochs `first_epoch..epochs-1`, one pass each.

    Each epoch's order depends only on (seed, epoch), not on how many epochs this process
    has run, so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def rows(epoch_seed: int):
        return _blocks(pattern, input_dim, shuffle_seed=epoch_seed).unbatch()

    return _epochs(rows, batch_size, seed, first_epoch, epochs)


def rows_epoch_dataset(rows: np.ndarray, batch_size: int, seed: int, epochs: int):
    """`epoch_dataset` over rows in memory (the in-process jobs), shuffled the same way: rows
    in the order a single shard holds them train on the same batches as the Beam job's."""
    import tensorflow as tf

    def source(_epoch_seed: int):
        return tf.data.Dataset.from_tensor_slices(np.asarray(rows, dtype=np.float32))

    return _epochs(source, batch_size, seed, 0, epochs)


def rows_dataset(rows: np.ndarray, batch_size: int):
    """`shard_dataset` over rows in memory: batches in row order."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(np.asarray(rows, dtype=np.float32)).batch(batch_size)


def _epochs(rows, batch_size: int, seed: int, first_epoch: int, epochs: int):
    def one_epoch(epoch: int):
        epoch_seed = seed * 100003 + epoch
        return rows(epoch_seed).shuffle(65536, seed=epoch_seed).batch(batch_size)

    # Python-built epochs (tf.data shuffle seeds must be Python ints), chained in order.
    # (A run killed after its last epoch resumes with nothing left to fit.)
    datasets = [one_epoch(epoch) for epoch in range(min(first_epoch, epochs - 1), epochs)]
    chained = datasets[0]
    for more in datasets[1:]:
        chained = chained.concatenate(more)
    return chained.prefetch(2)


def _blocks(pattern: str, input_dim: int, shuffle_seed=None):
    import tensorflow as tf

    files = tf.data.Dataset.from_tensor_slices(sorted(tf.io.gfile.glob(pattern)))
    if shuffle_seed is not None:
        files = files.shuffle(1 << 20, seed=shuffle_seed)
    return tf.data.TFRecordDataset(files).map(
        lambda block: tf.reshape(tf.io.decode_raw(block, tf.float32), [-1, input_dim])
    )


def split_rows(paths: PreparedPaths, input_dim: int) -> dict[str, int]:
    """Rows per split, counted from the shard records without loading them into memory."""
    import tensorflow as tf

    counts = {}
    for split in SPLITS:
        files = tf.io.gfile.glob(paths.shard_pattern(split))
        total = 0
        for block in tf.data.TFRecordDataset(files).map(tf.strings.length):
            total += int(block) // (4 * input_dim)
        counts[split] = total
    return counts


def load_split(paths: PreparedPaths, split: str, input_dim: int) -> np.ndarray:
    """All packed rows of one split as a float32 matrix (for device-resident training)."""
    blocks = [block.numpy() for block in _blocks(paths.shard_pattern(split), input_dim)]
    if not blocks:
        return np.zeros((0, input_dim), np.float32)
    return np.concatenate(blocks).astype(np.float32, copy=False)
