"""Which split (train / validation / calibration) a record falls in, from a hash of its id.

The training data job writes each split's shards (`pipeline.artifacts.shards`); the encoding
and the training statistics are derived from the train split alone, so the calibration
records are as new to the encoding (vocabularies, scales) as a later batch's records are.
"""

from __future__ import annotations

import hashlib

import numpy as np

from configs.schema import TrainConfig
from pipeline.core.records import RecordChunk

SPLITS = ("train", "validation", "calibration")


def split_of(record_id: str, validation: float, calibration: float, seed: int) -> str:
    """A record's split, from a hash of its id: stable across runs, runners and workers."""
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    if u < calibration:
        return "calibration"
    if u < calibration + validation:
        return "validation"
    return "train"


def split_mask(record_ids, split: str, train: TrainConfig) -> np.ndarray:
    """Which of `record_ids` fall in `split`."""
    v, c, seed = train.validation_fraction, train.calibration_fraction, train.seed
    return np.array([split_of(rid, v, c, seed) == split for rid in record_ids], dtype=bool)


def train_rows(chunk: RecordChunk, train: TrainConfig) -> list[RecordChunk]:
    """The chunk's train-split rows (as a one-chunk list, empty when it has none: a FlatMap)."""
    keep = split_mask(chunk.record_ids, "train", train)
    return [chunk.take(keep)] if keep.any() else []
