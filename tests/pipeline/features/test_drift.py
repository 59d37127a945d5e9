"""Drift on training-quantile bins with a G-test: no false alarms on heavy tails or small
batches (both happened with TFDV's equi-width comparator), real shifts still found."""

from __future__ import annotations

import json
from types import SimpleNamespace

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from tensorflow_data_validation.statistics import stats_impl

from configs import VaepipeConfig
from configs.schema import SchemaConfig
from pipeline.core.records import CATEGORICAL, NUMERIC, RecordChunk
from pipeline.features.drift import (
    REFERENCE_STAT,
    count_chunk,
    drift_rows,
    g_test_p_value,
    jensen_shannon,
    reference_counts,
    references,
    with_reference,
)
from pipeline.features.statistics import infer_schema, stats_options, to_record_batch
from pipeline.features.validation import ValidateBatch

KINDS = {"amount": NUMERIC, "count": NUMERIC, "channel": CATEGORICAL}


def table(rows: int, seed: int, scale: float = 1.0) -> RecordChunk:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, rows) * scale,
            "count": rng.poisson(3.0, rows).astype(np.float64),
            "channel": rng.choice(
                ["web", "store", "phone", "partner"], rows, p=[0.5, 0.25, 0.15, 0.1]
            ).astype(object),
        }
    )
    ids = [f"{seed}:{i}" for i in range(rows)]
    return RecordChunk("t.csv", ids, [""] * rows, frame)


@pytest.fixture(scope="module")
def bundle():
    """A bundle's statistics (with the exact drift reference) and schema, from 16k rows."""
    train = table(16_000, seed=1)
    stats = stats_impl.generate_statistics_in_memory(
        to_record_batch(train, KINDS), stats_options(1000)
    )
    refs = references(stats)
    with_ref = with_reference(stats, count_chunk(train, refs), refs)
    encoding = SimpleNamespace(kinds=KINDS)
    return SimpleNamespace(
        encoding=encoding, schema=infer_schema(stats, KINDS), statistics=with_ref
    )


def validate(bundle, chunk: RecordChunk, tmp_path, **schema) -> dict:
    config = VaepipeConfig(schema=SchemaConfig(**schema))
    with BeamTestPipeline() as p:
        _ = p | beam.Create([chunk]) | ValidateBatch(bundle, config, str(tmp_path))
    report = json.loads((tmp_path / "validation_report.json").read_text())
    return {row["feature"]: row for row in report["drift"]}


@pytest.mark.parametrize(("rows", "seed"), [(100, 2), (100, 3), (20_000, 4)])
def test_clean_batches_do_not_drift(bundle, tmp_path, rows, seed):
    drift = validate(bundle, table(rows, seed), tmp_path)
    assert set(drift) == set(KINDS)
    assert not any(row["drifted"] for row in drift.values()), drift
    assert drift["amount"]["measure"] == "jensen_shannon_divergence"
    assert drift["channel"]["measure"] == "l_infty"
    assert drift["amount"]["rows"] == rows
    if rows == 20_000:  # a large clean batch: tiny divergence on quantile bins
        assert drift["amount"]["value"] < 0.005


def test_a_shifted_batch_drifts_on_the_shifted_column_only(bundle, tmp_path):
    drift = validate(bundle, table(2000, seed=5, scale=3.0), tmp_path)
    assert drift["amount"]["drifted"] and drift["amount"]["value"] > 0.1
    assert drift["amount"]["p_value"] < 1e-6
    assert not drift["count"]["drifted"] and not drift["channel"]["drifted"]


def test_a_small_batch_needs_a_significant_difference(bundle, tmp_path):
    """Five shifted rows measure a large divergence, but five rows cannot show drift."""
    drift = validate(bundle, table(5, seed=6, scale=3.0), tmp_path)
    assert drift["amount"]["value"] > 0.1
    assert drift["amount"]["p_value"] > 0.001 and not drift["amount"]["drifted"]


def test_categories_drift_when_their_mix_changes(bundle, tmp_path):
    chunk = table(2000, seed=7)
    chunk.frame["channel"] = np.where(np.arange(2000) % 2 == 0, "web", "partner").astype(object)
    drift = validate(bundle, chunk, tmp_path)
    assert drift["channel"]["drifted"] and drift["channel"]["value"] == pytest.approx(0.4, abs=0.02)


def test_reference_counts_are_the_training_counts_in_quantile_bins(bundle):
    refs = references(bundle.statistics)
    kind, edges = refs["amount"]
    assert kind == "numeric" and 15 <= len(edges) <= 20
    counts = reference_counts(bundle.statistics, refs)
    train = table(16_000, seed=1).frame
    expected = np.bincount(
        np.searchsorted(edges, train["amount"], side="right"), minlength=len(edges) + 1
    )
    np.testing.assert_array_equal(counts["amount"], expected)
    shares = counts["amount"][1:-1] / 16_000  # interior bins: about 1/20 each, whatever the tail
    assert shares.min() > 0.03 and shares.max() < 0.07
    # Poisson counts: one bin per value (the repeated quantile boundaries collapse)
    assert set(refs["count"][1]) <= set(range(12))
    assert refs["channel"] == ("categorical", ("web", "store", "phone", "partner"))


def test_an_older_bundle_without_the_reference_falls_back_to_its_quantile_histogram(bundle):
    stats = type(bundle.statistics)()
    stats.CopyFrom(bundle.statistics)
    for feature in stats.datasets[0].features:
        del feature.custom_stats[:]
    refs = references(stats)
    counts = reference_counts(stats, refs)["amount"]
    assert counts.sum() == pytest.approx(16_000, rel=0.01)
    assert not any(
        c.name == REFERENCE_STAT for f in stats.datasets[0].features for c in f.custom_stats
    )
    clean = count_chunk(table(20_000, seed=8), refs)
    rows = drift_rows(refs, reference_counts(stats, refs), clean, 0.1, 0.1, 0.001)
    assert not any(row["drifted"] for row in rows)


def test_jensen_shannon_and_g_test_closed_forms():
    p = np.array([1.0, 0.0])
    q = np.array([0.0, 1.0])
    assert jensen_shannon(p, q) == pytest.approx(1.0)  # disjoint: 1 bit
    assert jensen_shannon(np.array([1.0, 3.0]), np.array([2.0, 6.0])) == pytest.approx(0.0)
    same = g_test_p_value(np.array([500.0, 500.0]), np.array([50.0, 50.0]))
    assert same == pytest.approx(1.0)
    assert g_test_p_value(np.array([500.0, 500.0]), np.array([90.0, 10.0])) < 1e-10
