"""Training marginals from TFDV statistics, and samples' shares on the same bins."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline.report.marginals import training_marginals


def _statistics() -> statistics_pb2.DatasetFeatureStatisticsList:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    data = stats.datasets.add()
    number = data.features.add()
    number.path.step.append("x")
    quantiles = number.num_stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
    for low, high in [(0, 1), (1, 1), (1, 2), (2, 4)]:  # a zero-width bucket at 1
        quantiles.buckets.add(low_value=low, high_value=high, sample_count=25)
    colour = data.features.add()
    colour.path.step.append("colour")
    colour.string_stats.common_stats.num_non_missing = 100
    for value, frequency in [("red", 70), ("blue", 30)]:
        colour.string_stats.top_values.add(value=value, frequency=frequency)
    flag = data.features.add()
    flag.path.step.append("flag")
    standard = flag.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
    standard.buckets.add(low_value=0, high_value=0.5, sample_count=80)
    standard.buckets.add(low_value=0.5, high_value=1, sample_count=20)
    return stats


def test_numeric_bins_merge_zero_width_buckets():
    marginal = training_marginals(_statistics(), ["x"], {})["x"]
    np.testing.assert_allclose(marginal.edges, [0, 1, 2, 4])
    # The zero-width bucket at 1 belongs to the bin [1, 2).
    np.testing.assert_allclose(marginal.shares, [0.25, 0.5, 0.25])
    shares, outside = marginal.sample_shares([0.5, 1.5, 1.5, 3.0, 9.0, None])
    np.testing.assert_allclose(shares, [0.2, 0.4, 0.2])
    assert outside == pytest.approx(0.2)


def test_string_and_integer_categories():
    marginals = training_marginals(_statistics(), ["colour", "flag"], {"flag": ["0", "1"]})
    colour, flag = marginals["colour"], marginals["flag"]
    assert colour.labels == ["red", "blue"]
    np.testing.assert_allclose(colour.shares, [0.7, 0.3])
    shares, outside = colour.sample_shares(["red", "blue", "green", "red"])
    np.testing.assert_allclose(shares, [0.5, 0.25])
    assert outside == pytest.approx(0.25)
    np.testing.assert_allclose(flag.shares, [0.8, 0.2])
    np.testing.assert_allclose(flag.sample_shares([0, 1, 1, 1])[0], [0.25, 0.75])


def test_features_not_asked_for_are_left_out():
    assert list(training_marginals(_statistics(), ["x"], {})) == ["x"]
