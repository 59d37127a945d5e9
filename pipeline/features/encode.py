"""Typed chunks -> the model's packed input, with the excluded columns carried beside it."""

from __future__ import annotations

from pipeline.core.records import EncodedChunk, RecordChunk


def encode_chunk(chunk: RecordChunk, encoding, exclude: tuple[str, ...]) -> EncodedChunk:
    """The chunk as model input (`encoding.encode`), with its excluded columns carried along."""
    present = [c for c in exclude if c in chunk.frame.columns]
    return EncodedChunk(
        source=chunk.source,
        record_ids=chunk.record_ids,
        raw=chunk.raw,
        inputs=encoding.encode(chunk.frame),
        passthrough=chunk.frame[present],
    )
