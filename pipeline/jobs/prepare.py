"""The training data job (Beam): read -> type -> TFDV statistics and schema -> encoding ->
encoded TFRecord shards split into train / validation / calibration.

The data kind (`pipeline.kinds`) reads, types and profiles its records and derives the
encoding; everything the model needs is derived inside one pipeline, so it runs unchanged on
Dataflow. The driver then streams the shards into Keras (memory does not grow with the data).
"""

from __future__ import annotations

import json

import apache_beam as beam
from tensorflow_metadata.proto.v0 import schema_pb2

from configs.schema import VaepipeConfig
from pipeline import kinds
from pipeline.artifacts.bundle import record_columns
from pipeline.artifacts.shards import PreparedPaths, WriteShards
from pipeline.core.fs import write_bytes, write_text
from pipeline.features.drift import SumCounts, count_chunk, references, with_reference
from pipeline.features.encode import encode_chunk
from pipeline.features.splits import train_rows
from pipeline.features.statistics import infer_schema
from pipeline.sinks.parquet import WriteDeadLetters


def build_prepare_pipeline(
    root: beam.Pipeline,
    input_pattern: str,
    config: VaepipeConfig,
    paths: PreparedPaths,
    curated_schema: schema_pb2.Schema | None = None,
) -> None:
    """Wire the training data job onto `root` (reads `input_pattern`, writes under `paths`)."""
    prepared = kinds.get(config.data.kind).prepare(root, input_pattern, config, curated_schema)
    _write_artifacts(prepared, curated_schema, paths, config)
    exclude = tuple(config.data.exclude_columns)
    encoding = beam.pvalue.AsSingleton(prepared.encoding)
    encoded = prepared.typed | "Encode" >> beam.Map(encode_chunk, encoding, exclude)
    _ = encoded | "WriteShards" >> WriteShards(paths, config.train)
    _ = (
        tuple(prepared.dead)
        | "AllDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteDeadLetters(paths.dead_letter)
    )


def _write_artifacts(prepared, curated_schema, paths: PreparedPaths, config) -> None:
    stats = prepared.statistics
    _ = _with_drift_reference(prepared, config) | "WriteStatistics" >> beam.Map(
        lambda s: write_bytes(paths.statistics, s.SerializeToString())
    )
    if curated_schema is None:
        schema = stats | "InferSchema" >> beam.Map(infer_schema, prepared.kinds)
    else:
        schema = stats | "CuratedSchema" >> beam.Map(lambda _, s: s, curated_schema)
    _ = schema | "WriteSchema" >> beam.Map(lambda s: write_text(paths.schema, str(s)))
    _ = prepared.encoding | "WriteEncoding" >> beam.Map(
        lambda e: write_text(paths.encoding, e.to_json())
    )
    if prepared.columns is not None:
        _ = prepared.columns | "WriteColumns" >> beam.Map(
            lambda c: write_text(paths.columns, json.dumps(c, indent=1))
        )
    if prepared.profiles is not None:  # what decode needs to restore the input's columns
        _ = prepared.profiles | "WriteRecordColumns" >> beam.Map(
            _write_record_columns, prepared.kinds, config.data.id_column, paths.record_columns
        )


def _with_drift_reference(prepared, config):
    """The statistics with the train split's exact counts in each numeric feature's drift
    bins (its training 20-quantiles), which later batches are compared with."""
    refs = prepared.statistics | "DriftBins" >> beam.Map(references)
    counts = (
        prepared.typed
        | "DriftTrainSplit" >> beam.FlatMap(train_rows, config.train)
        | "DriftCounts" >> beam.Map(count_chunk, beam.pvalue.AsSingleton(refs))
        | "SumDriftCounts" >> beam.CombineGlobally(SumCounts())
    )
    return prepared.statistics | "AttachDriftReference" >> beam.Map(
        with_reference, beam.pvalue.AsSingleton(counts), beam.pvalue.AsSingleton(refs)
    )


def _write_record_columns(profiles, kinds, id_column, path: str) -> None:
    write_text(path, record_columns(profiles, kinds, id_column).to_json())
