"""Per-chunk preprocessing shared by the training-data and scoring jobs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.column_types import apply_kinds
from pipeline.io import DEAD
from pipeline.records import EncodedChunk, RecordChunk


class ApplyKindsDoFn(beam.DoFn):
    """Typed chunks out; rows whose values do not fit their column's kind to dead letters.

    The kinds come from the constructor (scoring: the bundle's) or, when computed inside the
    pipeline (training), as a side input to `process`.
    """

    def __init__(self, exclude: tuple[str, ...], kinds: Mapping[str, str] | None = None):
        self._exclude = tuple(exclude)
        self._kinds = dict(kinds) if kinds is not None else None
        self._dead = Metrics.counter("vaepipe", "rows_dead_lettered")

    def process(self, chunk: RecordChunk, kinds: Mapping[str, str] | None = None) -> Iterator:
        typed, dead = apply_kinds(chunk, kinds if kinds is not None else self._kinds, self._exclude)
        self._dead.inc(len(dead))
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        if typed is not None:
            yield typed


def encode_chunk(chunk: RecordChunk, encoding, exclude: tuple[str, ...]) -> EncodedChunk:
    """The chunk as model input, with its excluded columns carried beside it."""
    present = [c for c in exclude if c in chunk.frame.columns]
    return EncodedChunk(
        source=chunk.source,
        record_ids=chunk.record_ids,
        raw=chunk.raw,
        inputs=encoding.encode(chunk.frame),
        passthrough=chunk.frame[present],
    )
