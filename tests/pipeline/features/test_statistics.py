"""TFDV statistics over typed chunks: Arrow conversion, real statistics, schema, quantiles."""

from __future__ import annotations

import functools
import math

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NUMERIC, RecordChunk
from pipeline.features import statistics
from pipeline.features.column_types import apply_kinds
from pipeline.features.statistics import (
    QUANTILE_BUCKETS,
    ComputeStatistics,
    RowSample,
    anomaly_lines,
    categorical_int_schema,
    feature_stats,
    infer_schema,
    kinds_from_schema,
    quantile,
    sampled_record_batch,
    stats_options,
    to_record_batch,
    validate,
)

KINDS = {"n": NUMERIC, "c": CATEGORICAL, "i": INT_CATEGORICAL}
FeatureType = statistics_pb2.FeatureNameStatistics


def typed(chunk_of, columns: dict, kinds=KINDS):
    chunk, dead = apply_kinds(chunk_of(columns), kinds)
    assert dead == []
    return chunk


# ---------------------------------------------------------------------- to_record_batch


def test_record_batch_has_list_columns_with_null_lists_for_missing(chunk_of):
    chunk = typed(
        chunk_of,
        {"n": ["1.5", None, "3"], "c": [None, "b", "c"], "i": ["1", "0", None]},
    )
    batch = to_record_batch(chunk, KINDS)
    assert batch.schema.names == ["n", "c", "i"]
    assert batch.schema.field("n").type == pa.list_(pa.float32())
    assert batch.schema.field("c").type == pa.list_(pa.binary())
    assert batch.schema.field("i").type == pa.list_(pa.int64())
    assert batch.to_pydict() == {
        "n": [[1.5], None, [3.0]],
        "c": [None, [b"b"], [b"c"]],
        "i": [[1], [0], None],
    }
    for column in batch.columns:
        assert column.null_count == 1


def test_record_batch_int_category_that_is_not_an_integer_is_null(chunk_of):
    chunk = typed(chunk_of, {"i": ["2", "x", "0"]}, {"i": INT_CATEGORICAL})
    batch = to_record_batch(chunk, {"i": INT_CATEGORICAL})
    assert batch.column(0).to_pylist() == [[2], None, [0]]


def test_record_batch_all_missing_column(chunk_of):
    chunk = typed(chunk_of, {"n": [None, None]}, {"n": NUMERIC})
    batch = to_record_batch(chunk, {"n": NUMERIC})
    assert batch.num_rows == 2 and batch.column(0).null_count == 2


# ------------------------------------------------------------------- ComputeStatistics


def _check_small_stats(actual, rows: int) -> None:
    if len(actual) != 1:
        raise BeamAssertException(f"expected one statistics list, got {len(actual)}")
    dataset = actual[0].datasets[0]
    if dataset.num_examples != rows:
        raise BeamAssertException(f"num_examples {dataset.num_examples} != {rows}")
    features = feature_stats(actual[0])
    types = {name: f.type for name, f in features.items()}
    expected = {"n": FeatureType.FLOAT, "c": FeatureType.STRING, "i": FeatureType.INT}
    if types != expected:
        raise BeamAssertException(f"feature types {types} != {expected}")
    if features["n"].num_stats.common_stats.num_missing != 2:
        raise BeamAssertException("n should have 2 missing values")
    if features["c"].string_stats.common_stats.num_missing != 1:
        raise BeamAssertException("c should have 1 missing value")
    if features["n"].num_stats.max != 7.0 or features["n"].num_stats.min != -1.0:
        raise BeamAssertException("n min/max wrong")


def test_compute_statistics_in_a_pipeline(chunk_of):
    chunks = [
        typed(chunk_of, {"n": ["1", None, "7"], "c": ["a", None, "b"], "i": ["0", "1", "1"]}),
        typed(chunk_of, {"n": ["-1", "2", None, "3"], "c": ["a"] * 4, "i": ["0", "1", "0", "1"]}),
    ]
    with BeamTestPipeline() as p:
        stats = p | beam.Create(chunks) | ComputeStatistics(KINDS, stats_options(10))
        assert_that(stats, functools.partial(_check_small_stats, rows=7))


def test_statistics_from_the_shared_run_count_rows_and_missing(stats_run):
    features = feature_stats(stats_run.plain)
    assert stats_run.plain.datasets[0].num_examples == len(stats_run.frame)
    assert set(features) == set(stats_run.kinds)
    x = features["x"].num_stats
    assert x.common_stats.num_missing == stats_run.frame["x"].isna().sum()
    assert x.mean == pytest.approx(np.nanmean(stats_run.frame["x"]), rel=1e-5)
    # Without a schema an integer category is an INT feature with numeric statistics.
    assert features["i"].type == FeatureType.INT and features["i"].HasField("num_stats")


def test_int_schema_makes_tfdv_count_integer_categories(stats_run):
    features = feature_stats(stats_run.with_int_schema)
    top = {v.value: v.frequency for v in features["i"].string_stats.top_values}
    assert top == stats_run.frame["i"].value_counts().to_dict()
    c_top = [v.value for v in features["c"].string_stats.top_values]
    assert c_top == ["a", "b", "c"]  # most frequent first


def test_categorical_int_schema_marks_only_int_categories():
    assert categorical_int_schema({"n": NUMERIC, "c": CATEGORICAL}) is None
    schema = categorical_int_schema(KINDS)
    assert [f.name for f in schema.feature] == ["i"]
    assert schema.feature[0].type == schema_pb2.INT
    assert schema.feature[0].int_domain.is_categorical


def test_stats_options_never_use_tfdvs_random_sampler():
    assert stats_options(50).sample_rate is None
    options = stats_options(5000)
    assert options.num_top_values == 5000
    assert options.num_rank_histogram_buckets == 1000
    assert options.num_quantiles_histogram_buckets == QUANTILE_BUCKETS


# -------------------------------------------------------------------------- RowSample


def numbered_chunk(n: int, source: str = "batch.csv") -> RecordChunk:
    """A typed n-row chunk whose column `n` holds each row's position (to see which rows a
    sample kept)."""
    frame = pd.DataFrame({"n": np.arange(n, dtype=np.float64)})
    return RecordChunk(source, [f"{source}:{i}" for i in range(n)], [""] * n, frame)


@pytest.mark.parametrize("n", [1, 40, 399, 400])
def test_a_chunk_within_the_floor_is_kept_whole(n):
    sample = RowSample(rate=0.1, min_rows=400)
    assert sample.rows(numbered_chunk(n)) is None
    batch = sampled_record_batch(numbered_chunk(n), {"n": NUMERIC}, sample)
    assert batch.column(0).to_pylist() == [[float(i)] for i in range(n)]


@pytest.mark.parametrize(("n", "rate", "kept"), [(4096, 0.1, 410), (10000, 0.1, 1000),
                                                  (4096, 0.25, 1024), (1000, 0.1, 400),
                                                  (401, 0.1, 400), (4096, 0.001, 400)])  # fmt: skip
def test_a_large_chunk_keeps_the_rate_or_the_floor(n, rate, kept):
    sample = RowSample(rate=rate, min_rows=400)
    assert sample.size(n) == kept == max(math.ceil(rate * n), 400)
    rows = sample.rows(numbered_chunk(n))
    assert len(rows) == kept and len(set(rows)) == kept
    assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < n


def test_the_sample_is_spread_over_the_chunk():
    rows = RowSample(rate=0.1, min_rows=1).rows(numbered_chunk(40_000))
    # A uniform draw: each tenth of the chunk holds about a tenth of the sample.
    counts = np.bincount(rows // 4000, minlength=10)
    assert counts.sum() == 4000
    assert np.all(np.abs(counts - 400) < 5 * np.sqrt(400))


def test_the_same_chunk_gives_the_same_rows_and_another_chunk_others():
    sample = RowSample(rate=0.1, min_rows=100)
    first = sample.rows(numbered_chunk(4096))
    assert np.array_equal(first, sample.rows(numbered_chunk(4096)))  # a fresh, equal chunk
    assert not np.array_equal(first, sample.rows(numbered_chunk(4096, source="other.csv")))
    batch = sampled_record_batch(numbered_chunk(4096), {"n": NUMERIC}, sample)
    assert batch.column(0).to_pylist() == [[float(i)] for i in first]


def test_a_full_sample_keeps_every_row():
    sample = RowSample(rate=1.0, min_rows=1)
    assert sample.full and sample.rows(numbered_chunk(5000)) is None


BAD_SAMPLES = [
    ({"rate": 0.0}, r"rate must be in \(0, 1\]"),
    ({"rate": 1.5}, "Received: rate=1.5"),
    ({"min_rows": 0}, "min_rows must be >= 1"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SAMPLES)
def test_row_sample_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RowSample(**kwargs)


def _check_rows(actual, rows: int) -> None:
    (stats,) = actual
    if stats.datasets[0].num_examples != rows:
        raise BeamAssertException(f"num_examples {stats.datasets[0].num_examples} != {rows}")


def test_compute_statistics_with_a_sample_counts_the_kept_rows():
    chunks = [numbered_chunk(4096), numbered_chunk(40, source="small.csv")]
    with BeamTestPipeline() as p:
        stats = (
            p
            | beam.Create(chunks)
            | ComputeStatistics({"n": NUMERIC}, stats_options(10), RowSample(0.1, 400))
        )
        assert_that(stats, functools.partial(_check_rows, rows=410 + 40))


# ---------------------------------------------------------------------------- quantile


@pytest.mark.parametrize("q", [0.0, 0.05, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_quantile_matches_numpy_on_a_uniform_sample(stats_run, q):
    x = stats_run.frame["x"].dropna().to_numpy()
    num = feature_stats(stats_run.plain)["x"].num_stats
    # TFDV's quantiles are approximate; 1% of the range is far below one bucket (5%).
    assert quantile(num, q) == pytest.approx(np.quantile(x, q), abs=0.01 * np.ptp(x))


def test_quantile_ends_are_min_and_max(stats_run):
    num = feature_stats(stats_run.plain)["x"].num_stats
    assert quantile(num, 0.0) == pytest.approx(num.min, rel=1e-6)
    assert quantile(num, 1.0) == pytest.approx(num.max, rel=1e-6)


def test_quantile_is_monotone(stats_run):
    num = feature_stats(stats_run.plain)["x"].num_stats
    values = [quantile(num, q) for q in np.linspace(0, 1, 41)]
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))


def test_quantile_none_without_a_quantile_histogram():
    assert quantile(statistics_pb2.NumericStatistics(), 0.5) is None
    num = statistics_pb2.NumericStatistics()
    num.histograms.add(type=statistics_pb2.Histogram.STANDARD).buckets.add(
        low_value=0, high_value=1, sample_count=3
    )
    assert quantile(num, 0.5) is None


def test_quantile_on_a_hand_made_histogram():
    num = statistics_pb2.NumericStatistics()
    hist = num.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
    for low in range(4):  # equal-count buckets [0,1) [1,2) [2,3) [3,4]
        hist.buckets.add(low_value=low, high_value=low + 1, sample_count=5)
    assert [quantile(num, q) for q in (0.0, 0.25, 0.5, 0.75, 1.0)] == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- schema


def test_infer_schema_marks_int_categoricals(stats_run):
    schema = infer_schema(stats_run.plain, stats_run.kinds)
    features = {f.name: f for f in schema.feature}
    assert features["i"].type == schema_pb2.INT
    assert features["i"].int_domain.is_categorical
    assert not features["k"].int_domain.is_categorical
    assert features["x"].type == schema_pb2.FLOAT
    assert features["c"].type == schema_pb2.BYTES
    # Unseen categories are tolerated up to 1% of the mass.
    assert features["c"].distribution_constraints.min_domain_mass == pytest.approx(0.99)


def test_kinds_from_inferred_schema_round_trip(stats_run):
    schema = infer_schema(stats_run.plain, stats_run.kinds)
    assert kinds_from_schema(schema) == stats_run.kinds


def test_kinds_from_a_curated_schema():
    schema = schema_pb2.Schema()
    schema.feature.add(name="b", type=schema_pb2.BYTES)
    schema.feature.add(name="a", type=schema_pb2.FLOAT)
    schema.feature.add(name="n", type=schema_pb2.INT)
    schema.feature.add(name="k", type=schema_pb2.INT).int_domain.is_categorical = True
    kinds = kinds_from_schema(schema)
    assert kinds == {"a": NUMERIC, "b": CATEGORICAL, "k": INT_CATEGORICAL, "n": NUMERIC}
    assert list(kinds) == ["a", "b", "k", "n"]


def test_validate_flags_unseen_categories_only(stats_run):
    schema = infer_schema(stats_run.plain, stats_run.kinds)
    assert anomaly_lines(validate(stats_run.plain, schema)) == []
    anomalies = validate(stats_run.drift, schema)
    assert set(anomalies.anomaly_info) == {"c"}
    [line] = anomaly_lines(anomalies)
    assert line.startswith("c: ")


def test_boolean_columns_get_a_bool_domain_and_round_trip_through_a_schema(chunk_of):
    from tensorflow_data_validation.statistics import stats_impl

    from pipeline.features.column_types import BOOLEAN

    kinds = {"b": BOOLEAN, "c": CATEGORICAL}
    chunk = chunk_of({"b": ["true", "false"] * 50, "c": ["x", "y"] * 50})
    stats = stats_impl.generate_statistics_in_memory(
        to_record_batch(chunk, kinds), stats_options(10)
    )
    schema = infer_schema(stats, kinds)
    feature = next(f for f in schema.feature if f.name == "b")
    assert (feature.bool_domain.true_value, feature.bool_domain.false_value) == ("true", "false")
    assert not feature.HasField("domain")
    assert kinds_from_schema(schema) == kinds
    assert anomaly_lines(validate(stats, schema)) == []


@pytest.mark.parametrize(
    "values",
    [
        ["1", "2", None, "30", "-4"],  # integer spellings: one Arrow cast
        [1, 2, None, 30, -4],  # integers from Parquet
        ["1", "2.0", None, " 3", "x"],  # mixed: the per-value reading decides
        [1.0, 2.0, None, float("nan"), True],
    ],
)
def test_integer_categories_read_as_int_reads_them(values):
    kept, valid = statistics._integers(np.array(values, dtype=object))
    expected = [
        statistics._as_int(v) if not isinstance(v, float) or v == v else None for v in values
    ]
    assert valid.tolist() == [v is not None for v in expected]
    assert kept.to_pylist() == [v for v in expected if v is not None]


def test_texts_are_utf8_bytes_of_the_present_values():
    kept, valid = statistics._texts(np.array(["café", None, "b"], dtype=object))
    assert valid.tolist() == [True, False, True]
    assert kept.to_pylist() == ["café".encode(), b"b"]
