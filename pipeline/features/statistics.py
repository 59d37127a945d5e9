"""TFDV statistics, schema inference and validation over typed chunks.

TFDV's Beam transforms take Arrow RecordBatches with list-typed columns (as tfx-bsl's decoders
produce), so `to_record_batch` wraps each scalar in a one-element list and each missing value in
a null list. Statistics drive the encoding (medians, quartiles, vocabularies), the schema guards
every scoring batch.

A scoring batch's statistics may be computed on a sample of its rows (`RowSample`): drawn per
chunk, deterministically, with a floor of rows below which a chunk is kept whole. Training
statistics are never sampled.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NUMERIC, RecordChunk
from pipeline.features.column_types import BOOLEAN, FALSE, TRUE

# 20 quantile buckets put exact boundaries at the quartiles the encoding needs.
QUANTILE_BUCKETS = 20


def stats_options(
    max_vocabulary: int, schema: schema_pb2.Schema | None = None
) -> tfdv.StatsOptions:
    """TFDV options shared by training and scoring. TFDV's own `sample_rate` stays off: it
    draws rows at random per record batch, so a small batch can lose all its rows and then
    fail the schema check; scoring samples with `RowSample` instead."""
    return tfdv.StatsOptions(
        schema=schema,
        num_top_values=max_vocabulary,
        num_rank_histogram_buckets=min(max_vocabulary, 1000),
        num_quantiles_histogram_buckets=QUANTILE_BUCKETS,
    )


@dataclass(frozen=True)
class RowSample:
    """Which rows of each chunk a scoring batch's TFDV statistics are computed on.

    An n-row chunk keeps `min(n, max(ceil(rate * n), min_rows))` rows: a chunk of at most
    `min_rows` rows is kept whole (so a small batch is checked in full), a large one at about
    `rate`. The rows are drawn by a generator seeded from the chunk's identity (its source and
    record ids), so a rerun over the same input checks the same rows.

    What a sample can miss: a schema check that one row can fail. An unseen category, an
    out-of-range number or a missing value in m rows of a batch reaches the statistics with
    probability about 1 - (1 - rate)^m (m = 1 at rate 0.1: 10%; m = 50: 99.5%), so a value
    seen once in a million rows is most likely not reported, while a problem in a sizeable
    share of rows is. Checks on shares (the inferred schemas' 1% domain-mass tolerance) are
    estimated on the sample, and a curated schema's absolute counts (presence min_count,
    dataset min_examples_count) count sampled rows. `vaepipe validate` checks every row.
    """

    rate: float = 1.0
    min_rows: int = 1

    def __post_init__(self):
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1]. Received: rate={self.rate}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be >= 1. Received: min_rows={self.min_rows}")

    @property
    def full(self) -> bool:
        """Whether every row of every chunk is kept."""
        return self.rate >= 1.0

    def size(self, n: int) -> int:
        """How many of a chunk's `n` rows are kept."""
        return min(n, max(math.ceil(self.rate * n), self.min_rows))

    def rows(self, chunk: RecordChunk) -> np.ndarray | None:
        """Sorted positions of the rows kept from `chunk`; None when all are kept."""
        n = len(chunk)
        k = self.size(n)
        if k >= n:
            return None
        rng = np.random.default_rng(chunk_seed(chunk))
        return np.sort(rng.choice(n, size=k, replace=False))


def chunk_seed(chunk: RecordChunk) -> int:
    """A seed from a chunk's identity: its source and record ids (not Python's `hash`, which
    differs between processes)."""
    identity = "\x00".join([chunk.source, *map(str, chunk.record_ids)])
    digest = hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def sampled_record_batch(
    chunk: RecordChunk, kinds: Mapping[str, str], sample: RowSample
) -> pa.RecordBatch:
    """`to_record_batch` of the rows of `chunk` that `sample` keeps."""
    rows = sample.rows(chunk)
    if rows is None:
        return to_record_batch(chunk, kinds)
    frame = chunk.frame.iloc[rows].reset_index(drop=True)
    kept = RecordChunk(chunk.source, [chunk.record_ids[i] for i in rows], (), frame)
    return to_record_batch(kept, kinds)


def to_record_batch(chunk: RecordChunk, kinds: Mapping[str, str]) -> pa.RecordBatch:
    """The modelled columns of a typed chunk as a list-typed Arrow RecordBatch."""
    arrays, names = [], []
    for name, kind in kinds.items():
        values = chunk.frame[name].to_numpy()
        if kind == NUMERIC:
            numbers = values.astype(np.float64)
            valid = ~np.isnan(numbers)
            arrays.append(_list_array(pa.array(numbers[valid], type=pa.float32()), valid))
        elif kind == INT_CATEGORICAL:
            # Integer categories stay integers for TFDV (the schema marks them categorical);
            # a non-integer spelling counts as missing here but still reaches the OOV bucket.
            kept, valid = _integers(values)
            arrays.append(_list_array(kept, valid))
        else:
            kept, valid = _texts(values)
            arrays.append(_list_array(kept, valid))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names)


def _integers(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The values that read as integers (int64) and the mask of them. Arrow casts a whole
    column of integer spellings at once; any other column takes the per-value path, whose
    reading (`int(value)`) is the reference."""
    valid = pd.notna(values)
    try:
        present = pa.array(values[valid].tolist())
        if pa.types.is_string(present.type):
            present = pc.cast(present, pa.int64())
        if pa.types.is_integer(present.type):
            return present.cast(pa.int64()), valid
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    ints = [_as_int(v) for v in values]
    valid = np.array([v is not None for v in ints], dtype=bool)
    return pa.array([v for v in ints if v is not None], type=pa.int64()), valid


def _texts(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The present values as UTF-8 bytes and the mask of them (one Arrow conversion for a
    column of text; the per-value encode for anything else)."""
    valid = np.not_equal(values, None).astype(bool)
    present = values[valid]
    try:
        return pa.array(present, type=pa.string()).cast(pa.binary()), valid
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v.encode("utf-8") for v in present], type=pa.binary()), valid


def _as_int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def categorical_int_schema(kinds: Mapping[str, str]) -> schema_pb2.Schema | None:
    """A partial schema that makes TFDV compute top values for integer categories."""
    names = [name for name, kind in kinds.items() if kind == INT_CATEGORICAL]
    if not names:
        return None
    schema = schema_pb2.Schema()
    for name in names:
        feature = schema.feature.add(name=name, type=schema_pb2.INT)
        feature.int_domain.is_categorical = True
    return schema


def _list_array(values: pa.Array, valid: np.ndarray) -> pa.ListArray:
    """One-element lists of `values`, with a null list where `valid` is False (missing)."""
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    mask = np.concatenate([~valid, [False]])
    return pa.ListArray.from_arrays(pa.array(offsets, mask=mask), values)


class ComputeStatistics(beam.PTransform):
    """Typed chunks -> one `DatasetFeatureStatisticsList` (TFDV, computed in the pipeline).

    With a `sample` (scoring's validation), each chunk contributes the rows it keeps; without
    one (training), every row.
    """

    def __init__(self, kinds_view, options: tfdv.StatsOptions, sample: RowSample | None = None):
        super().__init__()
        self._kinds = kinds_view
        self._options = options
        self._sample = None if sample is None or sample.full else sample

    def expand(self, chunks):
        if self._sample is None:
            batches = chunks | "ToRecordBatches" >> beam.Map(to_record_batch, kinds=self._kinds)
        else:
            batches = chunks | "SampleRecordBatches" >> beam.Map(
                sampled_record_batch, kinds=self._kinds, sample=self._sample
            )
        return batches | "GenerateStatistics" >> tfdv.GenerateStatistics(self._options)


def infer_schema(
    stats: statistics_pb2.DatasetFeatureStatisticsList, kinds: Mapping[str, str]
) -> schema_pb2.Schema:
    """TFDV's inferred schema, with integer categories marked and domains kept for all values.

    Unseen categories are legitimate at scoring time (they go to the OOV bucket), so the domain
    check tolerates a little unseen mass instead of flagging every new value.
    """
    schema = tfdv.infer_schema(stats, max_string_domain_size=1000)
    for feature in schema.feature:
        if kinds.get(feature.name) == INT_CATEGORICAL:
            feature.int_domain.is_categorical = True
        if kinds.get(feature.name) == BOOLEAN:
            _boolean_domain(schema, feature)
        elif feature.HasField("domain") or feature.HasField("string_domain"):
            feature.distribution_constraints.min_domain_mass = 0.99
    return schema


def _boolean_domain(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> None:
    """Mark a boolean column with TFDV's bool domain ("false"/"true", the canonical
    spellings): it validates both values even if training saw one, and says boolean."""
    if feature.HasField("domain"):
        kept = [d for d in schema.string_domain if d.name != feature.domain]
        del schema.string_domain[:]
        schema.string_domain.extend(kept)
    feature.ClearField("domain")
    feature.ClearField("string_domain")
    feature.bool_domain.true_value = TRUE
    feature.bool_domain.false_value = FALSE


def kinds_from_schema(schema: schema_pb2.Schema) -> dict[str, str]:
    """Column kinds implied by a (curated or inferred) schema."""
    kinds = {}
    for feature in schema.feature:
        if feature.type == schema_pb2.BYTES and feature.HasField("bool_domain"):
            kinds[feature.name] = BOOLEAN
        elif feature.type == schema_pb2.BYTES:
            kinds[feature.name] = CATEGORICAL
        elif feature.type == schema_pb2.INT and feature.int_domain.is_categorical:
            kinds[feature.name] = INT_CATEGORICAL
        else:
            kinds[feature.name] = NUMERIC
    return dict(sorted(kinds.items()))


def validate(
    stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema
) -> anomalies_pb2.Anomalies:
    """Schema anomalies of a batch's statistics (drift is measured by `features.drift`)."""
    plain = schema_pb2.Schema()
    plain.CopyFrom(schema)
    for feature in plain.feature:  # a curated schema may carry TFDV comparators: not ours
        feature.ClearField("drift_comparator")
        feature.ClearField("skew_comparator")
    return tfdv.validate_statistics(stats, plain)


def anomaly_lines(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One readable line per anomalous feature: `feature: description` (drift excluded)."""
    lines = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        reasons = [r for r in info.reason if not _is_drift(r)]
        if reasons:
            text = "; ".join(f"{r.short_description} ({r.description})" for r in reasons)
            lines.append(f"{name}: {text}")
    return lines


def _is_drift(reason) -> bool:
    # Drift is reported separately (drift_report), with its measured values.
    return anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_")


def feature_stats(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """The features of the (single) dataset in `stats`, by name."""
    return {f.path.step[0]: f for f in stats.datasets[0].features}


def quantile_histogram(
    num_stats: statistics_pb2.NumericStatistics,
) -> statistics_pb2.Histogram | None:
    """TFDV's equal-count (quantiles) histogram of a numeric feature, if it has buckets."""
    for hist in num_stats.histograms:
        if hist.type == statistics_pb2.Histogram.QUANTILES and hist.buckets:
            return hist
    return None


def quantile(num_stats: statistics_pb2.NumericStatistics, q: float) -> float | None:
    """Quantile `q` read off TFDV's equal-count histogram (None if TFDV computed none)."""
    hist = quantile_histogram(num_stats)
    if hist is None:
        return None
    index = min(int(round(q * len(hist.buckets))), len(hist.buckets))
    if index == len(hist.buckets):
        return hist.buckets[-1].high_value
    return hist.buckets[index].low_value
