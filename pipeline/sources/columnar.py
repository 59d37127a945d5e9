"""Parquet and TFRecord (tf.Example) files -> `RecordChunk`s, in batches of `data.chunk_rows`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import DataConfig
from pipeline.core.records import DeadLetter, JsonRows, RecordChunk
from pipeline.sources.ids import parse_dead_letter, with_ids


def parquet_chunks(path: str, config: DataConfig) -> Iterator:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        first_row = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=config.chunk_rows):
            yield parse_arrow_batch(batch, first_row, path, config)
            first_row += batch.num_rows


def tfrecord_chunks(path: str, config: DataConfig) -> Iterator:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.tfrecordio import _TFRecordUtil  # Beam's own TFRecord framing reader

    def records(handle):
        while (payload := _TFRecordUtil.read_record(handle)) is not None:
            yield payload

    with FileSystems.open(path) as handle:
        numbered = enumerate(records(handle), start=1)
        for batch in _batched(numbered, config.chunk_rows):
            yield parse_examples(batch, path, config)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def parse_arrow_batch(
    batch: pa.RecordBatch, first_row: int, source: str, config: DataConfig
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """A chunk from an Arrow batch (Parquet); raw inputs are the rows as JSON."""
    # integer_object_nulls: a nullable int column stays int (id 7, not 7.0), None where null.
    frame = batch.to_pandas(integer_object_nulls=True)
    if frame.empty:
        return None, []
    frame = frame.astype(object).where(frame.notna(), None)
    raws = JsonRows(frame)
    numbers = list(range(first_row + 1, first_row + len(frame) + 1))
    return with_ids(frame, raws, numbers, source, config, [])


def parse_examples(
    records: Iterable[tuple[int, bytes]], source: str, config: DataConfig
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """A chunk from serialized tf.Example records (one value per feature is kept)."""
    from tensorflow.core.example import example_pb2  # heavy import, only for TFRecord inputs

    rows, raws, numbers, dead = [], [], [], []
    for number, payload in records:
        try:
            example = example_pb2.Example.FromString(payload)
        except Exception as err:  # protobuf raises DecodeError, a private type
            dead.append(
                parse_dead_letter(
                    f"{source}:{number}", source, "bad_example", str(err), repr(payload)
                )
            )
            continue
        row = {name: _first_value(feature) for name, feature in example.features.feature.items()}
        rows.append(row)
        raws.append(json.dumps(row, default=str))
        numbers.append(number)
    if not rows:
        return None, dead
    frame = pd.DataFrame(rows, dtype=object)
    frame = frame.where(frame.notna(), None)
    return with_ids(frame, raws, numbers, source, config, dead)


def _first_value(feature) -> object:
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
