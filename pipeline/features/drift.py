"""Drift of a batch against the training data, per feature, on bins that hold equal training mass.

TFDV's own comparator measures the Jensen-Shannon divergence on its equi-width histogram: on a
heavy-tailed column almost all of the mass sits in the first bin or two, and where exactly the
tail's few values fall moves the divergence a lot (a batch drawn from the training
distribution measured 0.28 against a 0.1 threshold). It also ignores the batch size: a 100-row
batch measures a divergence of sampling noise alone. Here:

- Numbers are binned at the training data's 20-quantiles (the quantile histogram of the
  training statistics), so each bin holds about 1/20 of the training rows whatever the tail;
  discrete columns get one bin per repeated boundary value. The training rows' exact counts in
  those bins are stored in the bundle's statistics (a custom statistic of each feature).
- Categories are compared on their training top values plus one "other" bucket.
- A feature drifts when its measure (Jensen-Shannon divergence, base 2, for numbers;
  L-infinity distance of the frequencies for categories) exceeds its threshold AND a G-test
  (likelihood-ratio chi-square) of the batch's counts against the training counts is
  significant at `schema.drift_p_value`: a small batch, whose divergence is mostly noise,
  cannot drift by chance, and a large one must also differ by a meaningful amount.
"""

from __future__ import annotations

from collections.abc import Mapping

import apache_beam as beam
import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline.core.records import RecordChunk
from pipeline.features.statistics import quantile_histogram

# The custom statistic holding a numeric feature's training counts in its drift bins.
REFERENCE_STAT = "vaepipe_drift_reference"
# Categories tested one by one (the rest are pooled): a G-test needs populated cells.
MAX_TEST_CATEGORIES = 20
JS = "jensen_shannon_divergence"
LINF = "l_infty"


def references(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, tuple]:
    """Per feature, how a batch is counted: ("numeric", bin edges) or ("categorical", values).

    Numeric bins are (-inf, e1), [e1, e2), ..., [em, inf) for the distinct interior
    boundaries e of the training quantile histogram."""
    out = {}
    for feature in stats.datasets[0].features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if feature.HasField("num_stats"):
            edges = _quantile_edges(feature.num_stats)
            if edges is not None:
                out[name] = ("numeric", edges)
        elif feature.HasField("string_stats") and feature.string_stats.top_values:
            values = tuple(v.value for v in feature.string_stats.top_values)
            out[name] = ("categorical", values)
    return out


def _quantile_edges(num: statistics_pb2.NumericStatistics) -> np.ndarray | None:
    hist = quantile_histogram(num)
    if hist is None:
        return None
    return np.unique([b.low_value for b in hist.buckets[1:]]).astype(np.float64)


def count_chunk(chunk: RecordChunk, refs: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """The chunk's counts per feature: per numeric bin, or per category (+ one "other")."""
    counts = {}
    for name, (kind, spec) in refs.items():
        if name not in chunk.frame.columns:
            continue
        column = chunk.frame[name]
        if kind == "numeric":
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            numbers = numbers[np.isfinite(numbers)]
            index = np.searchsorted(spec, numbers, side="right")
            counts[name] = np.bincount(index, minlength=len(spec) + 1).astype(np.float64)
        else:
            values = column[column.notna()].astype(str).to_numpy(dtype=object)
            index = pd.Index(spec, dtype=object).get_indexer(values)
            index = np.where(index < 0, len(spec), index)
            counts[name] = np.bincount(index, minlength=len(spec) + 1).astype(np.float64)
    return counts


class SumCounts(beam.CombineFn):
    """Adds `count_chunk` results over a PCollection of chunks' counts."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, acc: dict, counts: dict) -> dict:
        for name, c in counts.items():
            acc[name] = acc[name] + c if name in acc else np.array(c, dtype=np.float64)
        return acc

    def merge_accumulators(self, accs) -> dict:
        merged: dict = {}
        for acc in accs:
            merged = self.add_input(merged, acc)
        return merged

    def extract_output(self, acc: dict) -> dict:
        return acc


def with_reference(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
    counts: Mapping[str, np.ndarray],
    refs: Mapping[str, tuple],
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A copy of the training `stats` carrying each numeric feature's exact training counts
    in its drift bins (REFERENCE_STAT), for later batches to be compared with."""
    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.CopyFrom(stats)
    if not out.datasets:
        return out
    for feature in out.datasets[0].features:
        name = feature.path.step[0] if feature.path.step else feature.name
        kind, edges = refs.get(name, (None, None))
        if kind != "numeric" or name not in counts:
            continue
        custom = feature.custom_stats.add(name=REFERENCE_STAT)
        bounds = np.concatenate([[-np.inf], edges, [np.inf]])
        for i, count in enumerate(counts[name]):
            custom.histogram.buckets.add(
                low_value=bounds[i], high_value=bounds[i + 1], sample_count=float(count)
            )
    return out


def reference_counts(
    stats: statistics_pb2.DatasetFeatureStatisticsList, refs: Mapping[str, tuple]
) -> dict[str, np.ndarray]:
    """The training counts per feature in the bins or categories of `refs`.

    Numbers: the stored exact counts; a bundle written before they were stored falls back to
    the quantile histogram's buckets (each bucket's rows in the bin its low end falls in)."""
    out = {}
    for feature in stats.datasets[0].features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name not in refs:
            continue
        kind, spec = refs[name]
        if kind == "numeric":
            out[name] = _numeric_reference(feature, spec)
        else:
            top = np.array([v.frequency for v in feature.string_stats.top_values], np.float64)
            total = float(feature.string_stats.common_stats.num_non_missing)
            out[name] = np.concatenate([top, [max(total - top.sum(), 0.0)]])
    return out


def _numeric_reference(feature, edges: np.ndarray) -> np.ndarray:
    for custom in feature.custom_stats:
        if custom.name == REFERENCE_STAT and len(custom.histogram.buckets) == len(edges) + 1:
            return np.array([b.sample_count for b in custom.histogram.buckets], np.float64)
    counts = np.zeros(len(edges) + 1)
    for hist in feature.num_stats.histograms:
        if hist.type == statistics_pb2.Histogram.QUANTILES:
            for bucket in hist.buckets:
                counts[np.searchsorted(edges, bucket.low_value, side="right")] += (
                    bucket.sample_count
                )
            break
    return counts


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two distributions."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        seen = a > 0
        return float(np.sum(a[seen] * np.log2(a[seen] / m[seen])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def g_test_p_value(reference: np.ndarray, batch: np.ndarray) -> float:
    """p-value of a G-test that the batch's counts come from the training distribution
    (a 2 x K test of homogeneity, so the training sample's own noise is allowed for)."""
    table = np.stack([reference, batch])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table, correction=False, lambda_="log-likelihood")[1])


def _pooled(reference: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The MAX_TEST_CATEGORIES most frequent training categories, the rest pooled."""
    values = reference[:-1]
    if len(values) <= MAX_TEST_CATEGORIES:
        return reference, batch
    keep = np.argsort(-values, kind="stable")[:MAX_TEST_CATEGORIES]
    rest = np.ones(len(reference), dtype=bool)
    rest[keep] = False

    def pool(c: np.ndarray) -> np.ndarray:
        return np.concatenate([c[keep], [c[rest].sum()]])

    return pool(reference), pool(batch)


def drift_rows(
    refs: Mapping[str, tuple],
    reference: Mapping[str, np.ndarray],
    batch: Mapping[str, np.ndarray],
    js_threshold: float,
    linf_threshold: float,
    p_value: float,
) -> list[dict]:
    """One row per feature with batch values: feature, measure, value, threshold, drifted,
    and the G-test's p_value and the batch rows it saw; largest measure first."""
    rows = []
    for name, (kind, _) in sorted(refs.items()):
        ref, got = reference.get(name), batch.get(name)
        if ref is None or got is None or got.sum() == 0 or ref.sum() == 0:
            continue
        if kind == "numeric":
            measure, value, threshold = JS, jensen_shannon(ref, got), js_threshold
            p = g_test_p_value(ref, got)
        else:
            freq_ref, freq_got = ref / ref.sum(), got / got.sum()
            measure, threshold = LINF, linf_threshold
            value = float(np.max(np.abs(freq_ref - freq_got)))
            p = g_test_p_value(*_pooled(ref, got))
        rows.append(
            {
                "feature": name,
                "measure": measure,
                "value": round(value, 6),
                "threshold": float(threshold),
                "drifted": bool(value > threshold and p < p_value),
                "p_value": float(f"{p:.3g}"),
                "rows": int(got.sum()),
            }
        )
    return sorted(rows, key=lambda r: -r["value"])
