"""Training marginals from the bundle's TFDV statistics, and samples' shares on the same bins.

The report compares records drawn from the model with the training data without reading the
training data again: the statistics hold quantile buckets for numbers and value frequencies
for strings. Integer categories, profiled as numbers, use TFDV's equal-width buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

QUANTILES = statistics_pb2.Histogram.QUANTILES
STANDARD = statistics_pb2.Histogram.STANDARD
MAX_BINS = 10


@dataclass(frozen=True)
class Marginal:
    """One feature's training distribution over bins: numeric edges or category labels."""

    feature: str
    labels: list[str]
    shares: np.ndarray  # training share of each bin (sums to 1 over the bins)
    edges: np.ndarray | None = None  # numeric bins: len(labels) + 1 edges
    values: list | None = None  # categorical bins: the value of each label

    def sample_shares(self, column) -> tuple[np.ndarray, float]:
        """Shares of `column`'s non-missing values in this marginal's bins, and the share that
        falls outside them (beyond the training range, or another category)."""
        data = [v for v in column if v is not None and not (isinstance(v, float) and np.isnan(v))]
        if not data:
            return np.zeros(len(self.labels)), 0.0
        if self.edges is None:
            index = {str(v): i for i, v in enumerate(self.values)}
            counts = np.zeros(len(self.labels))
            outside = 0
            for value in data:
                i = index.get(str(value))
                if i is None:
                    outside += 1
                else:
                    counts[i] += 1
            return counts / len(data), outside / len(data)
        x = np.asarray(data, float)
        inside = (x >= self.edges[0]) & (x <= self.edges[-1])
        bins = np.clip(
            np.searchsorted(self.edges, x[inside], side="right") - 1, 0, len(self.labels) - 1
        )
        counts = np.bincount(bins, minlength=len(self.labels))
        return counts / len(x), float(np.mean(~inside))


def training_marginals(
    statistics: statistics_pb2.DatasetFeatureStatisticsList,
    features: list[str],
    integer: dict[str, list[str]],
) -> dict[str, Marginal]:
    """Marginals of `features` from the (first data set of the) training statistics."""
    out = {}
    if not statistics.datasets:
        return out
    for feature in statistics.datasets[0].features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name not in features:
            continue
        kind = feature.WhichOneof("stats")
        if kind == "string_stats":
            marginal = _categories(name, feature.string_stats)
        elif kind == "num_stats":
            if name in integer:
                marginal = _integer_categories(name, feature.num_stats, integer[name])
            else:
                marginal = _buckets(name, feature.num_stats, QUANTILES)
        else:
            marginal = None
        if marginal is not None:
            out[name] = marginal
    return out


def _categories(name: str, stats) -> Marginal | None:
    total = stats.common_stats.num_non_missing
    if not stats.top_values or total <= 0:
        return None
    values = [v.value for v in stats.top_values][:12]
    shares = np.asarray([v.frequency for v in stats.top_values][:12], float) / total
    return Marginal(name, [str(v) for v in values], shares, values=values)


def _integer_categories(name: str, stats, vocabulary: list[str]) -> Marginal | None:
    """An integer category's value frequencies from TFDV's equal-width buckets: a bucket's
    count goes to the vocabulary value in it (split evenly when several share a bucket)."""
    histogram = next((h for h in stats.histograms if h.type == STANDARD), None)
    if histogram is None or not histogram.buckets or not vocabulary:
        return None
    values = np.asarray([float(v) for v in vocabulary])
    shares = np.zeros(len(values))
    last = len(histogram.buckets) - 1
    for i, bucket in enumerate(histogram.buckets):
        inside = (values >= bucket.low_value) & (
            (values <= bucket.high_value) if i == last else (values < bucket.high_value)
        )
        if inside.any():
            shares[inside] += bucket.sample_count / inside.sum()
    if shares.sum() <= 0:
        return None
    return Marginal(name, list(vocabulary), shares / shares.sum(), values=list(vocabulary))


def _buckets(name: str, stats, wanted: int) -> Marginal | None:
    histogram = next((h for h in stats.histograms if h.type == wanted), None)
    if histogram is None or not histogram.buckets:
        return None
    lows = np.asarray([b.low_value for b in histogram.buckets], float)
    highs = np.asarray([b.high_value for b in histogram.buckets], float)
    counts = np.asarray([b.sample_count for b in histogram.buckets], float)
    edges = np.unique(np.concatenate([lows, highs[-1:]]))
    if len(edges) < 2:  # a constant column: one bin around its value
        edges = np.asarray([edges[0] - 0.5, edges[0] + 0.5])
    if len(edges) > MAX_BINS + 1:  # at most MAX_BINS bins stay readable (deciles)
        edges = edges[np.unique(np.linspace(0, len(edges) - 1, MAX_BINS + 1).round().astype(int))]
    # Buckets of zero width (repeated values) belong to the bin that holds their value.
    mids = np.where(highs > lows, (lows + highs) / 2, lows)
    index = np.clip(np.searchsorted(edges, mids, side="right") - 1, 0, len(edges) - 2)
    shares = np.bincount(index, weights=counts, minlength=len(edges) - 1)
    shares = shares / shares.sum() if shares.sum() > 0 else shares
    labels = [f"{_short(a)}–{_short(b)}" for a, b in zip(edges[:-1], edges[1:], strict=False)]
    return Marginal(name, labels, shares, edges=edges)


def _short(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1000 or (0 < magnitude < 0.01):
        return f"{value:.2g}"
    return f"{value:.3g}"
