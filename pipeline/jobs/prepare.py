"""The training data job (Beam): read -> column kinds -> TFDV statistics and schema -> encoding
-> encoded TFRecord shards split into train / validation / calibration.

Images (data.kind image) skip the column kinds: their TFDV statistics are of per-image
features (size, mode, format, bytes, intensity), and their encoding comes from the config.

Everything the model needs is derived inside one pipeline, so it runs unchanged on Dataflow;
the driver then streams the shards into Keras (memory does not grow with the data set).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from tensorflow_metadata.proto.v0 import schema_pb2

from configs.schema import VaepipeConfig
from pipeline.column_types import ProfileColumns, decide_kinds
from pipeline.encoding import TabularEncoding, encoding_from_statistics
from pipeline.image_encoding import ImageEncoding
from pipeline.images import ReadImages
from pipeline.io import DEAD, ReadRecords, WriteDeadLetters, write_bytes, write_text
from pipeline.preprocess import ApplyKindsDoFn, encode_chunk
from pipeline.records import EncodedChunk
from pipeline.statistics import (
    ComputeStatistics,
    infer_schema,
    kinds_from_schema,
    stats_options,
)

SPLITS = ("train", "validation", "calibration")


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

    def shards(self, split: str) -> str:
        return os.path.join(self.root, "shards", split)


def split_of(record_id: str, validation: float, calibration: float, seed: int) -> str:
    """A record's split, from a hash of its id: stable across runs, runners and workers."""
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    if u < calibration:
        return "calibration"
    if u < calibration + validation:
        return "validation"
    return "train"


def build_prepare_pipeline(
    root: beam.Pipeline,
    input_pattern: str,
    config: VaepipeConfig,
    paths: PreparedPaths,
    curated_schema: schema_pb2.Schema | None = None,
) -> None:
    """Wire the training data job onto `root` (reads `input_pattern`, writes under `paths`)."""
    if config.data.kind == "image":
        _build_image_prepare(root, input_pattern, config, paths, curated_schema)
        return
    read = root | "ReadRecords" >> ReadRecords(input_pattern, config.data)
    chunks = read.records
    cap = config.schema.int_categorical_max_values
    profiles = chunks | "ProfileColumns" >> beam.CombineGlobally(ProfileColumns(cap))
    if curated_schema is not None:
        kinds = root | "KindsFromSchema" >> beam.Create([kinds_from_schema(curated_schema)])
    else:
        kinds = profiles | "DecideKinds" >> beam.Map(decide_kinds, config.data, cap)
    kinds_view = beam.pvalue.AsSingleton(kinds)

    typed = chunks | "ApplyKinds" >> beam.ParDo(
        ApplyKindsDoFn(config.data.exclude_columns), kinds_view
    ).with_outputs(DEAD, main="typed")
    options = stats_options(config.schema.max_vocabulary, schema=curated_schema)
    stats = typed.typed | "ComputeStatistics" >> ComputeStatistics(kinds_view, options)
    encoding = stats | "DeriveEncoding" >> beam.Map(
        _derive_encoding,
        kinds_view,
        beam.pvalue.AsSingleton(profiles),
        config.schema.max_vocabulary,
        config.data.numeric_scaling,
    )
    _write_artifacts(stats, encoding, kinds_view, curated_schema, paths)

    encoded = typed.typed | "Encode" >> beam.Map(
        encode_chunk, beam.pvalue.AsSingleton(encoding), tuple(config.data.exclude_columns)
    )
    _write_shards(encoded, config, paths)
    _ = (
        (read[DEAD], typed[DEAD])
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> WriteDeadLetters(paths.dead_letter))
    )


def _build_image_prepare(
    root: beam.Pipeline,
    input_pattern: str,
    config: VaepipeConfig,
    paths: PreparedPaths,
    curated_schema: schema_pb2.Schema | None,
) -> None:
    """The training data job for images: the same outputs, without a column-typing stage."""
    read = root | "ReadRecords" >> ReadImages(input_pattern, config.image, config.data.chunk_rows)
    encoding = ImageEncoding.from_config(config)
    options = stats_options(config.schema.max_vocabulary, schema=curated_schema)
    stats = read["records"] | "ComputeStatistics" >> ComputeStatistics(encoding.kinds, options)
    encoding_pc = root | "ImageEncoding" >> beam.Create([encoding])
    _write_artifacts(stats, encoding_pc, encoding.kinds, curated_schema, paths)
    encoded = read["records"] | "Encode" >> beam.Map(encode_chunk, encoding, ())
    _write_shards(encoded, config, paths)
    _ = read[DEAD] | "WriteDeadLetters" >> WriteDeadLetters(paths.dead_letter)


def _write_shards(encoded, config: VaepipeConfig, paths: PreparedPaths) -> None:
    for split in SPLITS:
        _ = (
            encoded
            | f"Select{split.title()}" >> beam.FlatMap(_rows_of_split, split, config.train)
            | f"Write{split.title()}Shards"
            >> beam.io.WriteToTFRecord(
                os.path.join(paths.shards(split), "part"), file_name_suffix=".tfrecord"
            )
        )


def _derive_encoding(
    stats, kinds: dict, profiles: dict, max_vocabulary: int, numeric_scaling: str
) -> TabularEncoding:
    encoding = encoding_from_statistics(stats, kinds, max_vocabulary, numeric_scaling)
    # Integer categories have few values: their vocabulary is the exact set seen in training
    # when TFDV computed no top values for them (it does only when a schema says categorical).
    specs = []
    for spec in encoding.categorical:
        if spec.integer and not spec.vocabulary and spec.name in profiles:
            values = sorted(profiles[spec.name].distinct, key=lambda v: int(float(v)))
            spec = type(spec)(spec.name, tuple(str(int(float(v))) for v in values), True)
        specs.append(spec)
    return TabularEncoding(encoding.numeric, tuple(s for s in specs if s.vocabulary))


def _write_artifacts(stats, encoding, kinds_view, curated_schema, paths: PreparedPaths) -> None:
    _ = stats | "WriteStatistics" >> beam.Map(
        lambda s: write_bytes(paths.statistics, s.SerializeToString())
    )
    if curated_schema is None:
        schema = stats | "InferSchema" >> beam.Map(_infer_schema, kinds_view)
    else:
        schema = stats | "CuratedSchema" >> beam.Map(lambda _, s: s, curated_schema)
    _ = schema | "WriteSchema" >> beam.Map(lambda s: write_text(paths.schema, str(s)))
    _ = encoding | "WriteEncoding" >> beam.Map(lambda e: write_text(paths.encoding, e.to_json()))


def _infer_schema(stats, kinds: dict) -> schema_pb2.Schema:
    return infer_schema(stats, kinds)


def _rows_of_split(chunk: EncodedChunk, split: str, train_config) -> Iterator[bytes]:
    """The chunk's rows that fall in `split`, as one serialized float32 block (or nothing)."""
    keep = np.array(
        [
            split_of(
                rid,
                train_config.validation_fraction,
                train_config.calibration_fraction,
                train_config.seed,
            )
            == split
            for rid in chunk.record_ids
        ],
        dtype=bool,
    )
    if keep.any():
        yield np.ascontiguousarray(chunk.inputs[keep], dtype=np.float32).tobytes()
