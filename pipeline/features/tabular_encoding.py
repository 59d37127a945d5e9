"""The tabular encoding: records <-> the packed model input, derived from TFDV statistics.

Numbers: z = asinh((x - median) / scale), where `data.numeric_scaling` picks the scale: `std`,
the standard deviation, or `iqr`, IQR / 1.349 (the standard deviation of a normal with that IQR)
falling back to the standard deviation; 1 for constant columns. asinh is linear near the median
and logarithmic in the tails, so heavy-tailed columns (byte counts, durations) stay in a range
a Gaussian can model, and it is exactly invertible. The IQR is tiny on zero-inflated and
discrete columns (most values equal), which pushes almost every other value into asinh's
logarithmic range and flattens the differences the model should see; the standard deviation
does not have that failure (docs/BENCHMARKS.md measures both).
`quantile` (rank-Gaussian, a Gaussian copula's marginals): z = Phi^-1(F(x)), F the training
CDF read off TFDV's quantile histogram (linear between its boundaries, ties at their mid rank,
at the plotting position (nF + 1/2) / (n + 1)), and asinh((x - end) / std) beyond the training
range. Every column is then standard normal on the training rows, as the decoder's Gaussian
assumes, but a rank keeps the order of values, not how far out they are: on the development
corpus it lost to `std` on both halves (docs/BENCHMARKS.md, "Rank-Gaussian scaling").
Categories: a vocabulary of the most frequent training values, plus one out-of-vocabulary (OOV)
bucket for everything else. Booleans: a category whose vocabulary is always ("false", "true"),
read from any common spelling. Missing values are masked, never imputed as if observed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from tensorflow_metadata.proto.v0 import statistics_pb2

from configs.schema import NUMERIC_SCALINGS
from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NUMERIC
from pipeline.features.column_types import BOOLEAN, FALSE, TRUE
from pipeline.features.statistics import feature_stats, quantile, quantile_histogram
from vae_model.layout import FeatureLayout

IQR_TO_STD = 1.349


@dataclass(frozen=True)
class NumericSpec:
    """One number's map to the model's axis: asinh((x - center) / scale), or, with `knots`, the
    rank-Gaussian map through the training CDF (`levels` at the increasing `knots`)."""

    name: str
    center: float
    scale: float
    knots: tuple[float, ...] = ()
    levels: tuple[float, ...] = ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Model-axis values (float64) of original values `x` (NaN stays NaN)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if not self.knots:
                return np.arcsinh((x - self.center) / self.scale)
            low, high = self.knots[0], self.knots[-1]
            z_low, z_high = ndtri(self.levels[0]), ndtri(self.levels[-1])
            inside = ndtri(np.interp(x, self.knots, self.levels))
            z = np.where(x < low, z_low + np.arcsinh((x - low) / self.scale), inside)
            return np.where(x > high, z_high + np.arcsinh((x - high) / self.scale), z)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Original values of model-axis values `z` (the exact inverse of `forward`)."""
        z = np.clip(np.asarray(z, dtype=np.float64), -700.0, 700.0)
        with np.errstate(over="ignore", invalid="ignore"):
            if not self.knots:
                return self.center + self.scale * np.sinh(z)
            low, high = self.knots[0], self.knots[-1]
            z_low, z_high = ndtri(self.levels[0]), ndtri(self.levels[-1])
            x = np.interp(ndtr(z), self.levels, self.knots)
            x = np.where(z < z_low, low + self.scale * np.sinh(z - z_low), x)
            return np.where(z > z_high, high + self.scale * np.sinh(z - z_high), x)


@dataclass(frozen=True)
class CategoricalSpec:
    name: str
    vocabulary: tuple[str, ...]
    integer: bool = False
    boolean: bool = False  # vocabulary ("false", "true"), values read by to_booleans

    @property
    def cardinality(self) -> int:
        return len(self.vocabulary) + 1  # + the OOV bucket

    @property
    def oov_index(self) -> int:
        return len(self.vocabulary)


@dataclass(frozen=True)
class TabularEncoding:
    """How each modelled column maps to the model's packed input, and back."""

    numeric: tuple[NumericSpec, ...]
    categorical: tuple[CategoricalSpec, ...]

    @property
    def columns(self) -> list[str]:
        return [s.name for s in self.numeric] + [s.name for s in self.categorical]

    @property
    def kinds(self) -> dict[str, str]:
        kinds = {s.name: NUMERIC for s in self.numeric}
        for spec in self.categorical:
            kinds[spec.name] = (
                BOOLEAN if spec.boolean else INT_CATEGORICAL if spec.integer else CATEGORICAL
            )
        return kinds

    def layout(self) -> FeatureLayout:
        return FeatureLayout(
            numeric=tuple(s.name for s in self.numeric),
            categorical=tuple((s.name, s.cardinality) for s in self.categorical),
        )

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Packed float32 model input `[n, 2*width]`: values, then the observed mask."""
        values = np.zeros((len(frame), len(self.columns)), dtype=np.float32)
        mask = np.zeros_like(values)
        k = len(self.numeric)
        if k:
            # All numeric columns as one float64 block: one pass of NumPy per chunk, not one
            # per column (the encoding is on every scored record's path).
            x = frame[[s.name for s in self.numeric]].to_numpy(dtype=np.float64)
            seen = ~np.isnan(x)
            z = self._forward(x)
            # Values near the float64 limit overflow the division: clamp to asinh's range
            # over finite doubles (about 710.5) so they score as the extreme values they are.
            z = np.nan_to_num(z, nan=0.0, posinf=710.0, neginf=-710.0)
            values[:, :k] = np.clip(z, -710, 710)
            mask[:, :k] = seen
        specs = zip(self.categorical, self._vocabularies, strict=True)
        for j, (spec, vocabulary) in enumerate(specs, k):
            column = frame[spec.name].to_numpy(object)
            seen = pd.notna(column)
            # A hash lookup in C (vocabularies are unique); -1, unseen, is the OOV bucket.
            index = vocabulary.get_indexer(column)
            index = np.where(index < 0, spec.oov_index, index).astype(np.float32)
            values[:, j] = np.where(seen, index, 0.0)
            mask[:, j] = seen
        return np.concatenate([values, mask], axis=1)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """The numeric block `x` on the model's axis: all columns at once when every one is an
        asinh map (the default), else column by column."""
        centers, scales, ranked = self._scaling
        if ranked:
            return np.stack([s.forward(x[:, j]) for j, s in enumerate(self.numeric)], axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.arcsinh((x - centers) / scales)

    @cached_property
    def _scaling(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """Every numeric column's center and scale, and whether any column is rank-Gaussian."""
        centers = np.array([s.center for s in self.numeric], dtype=np.float64)
        scales = np.array([s.scale for s in self.numeric], dtype=np.float64)
        return centers, scales, any(s.knots for s in self.numeric)

    @cached_property
    def _vocabularies(self) -> tuple[pd.Index, ...]:
        """Each categorical column's vocabulary as a hash index, built once per encoding."""
        return tuple(pd.Index(s.vocabulary, dtype=object) for s in self.categorical)

    def decode(self, values: np.ndarray) -> pd.DataFrame:
        """Records in original units from packed values `[n, width]` (numeric z, category index).

        The OOV bucket decodes to None: the code says "a rare value", not which one.
        """
        out: dict[str, object] = {}
        for j, spec in enumerate(self.numeric):
            out[spec.name] = spec.inverse(values[:, j])
        offset = len(self.numeric)
        for j, spec in enumerate(self.categorical, start=offset):
            index = np.clip(np.rint(values[:, j]).astype(int), 0, spec.oov_index)
            vocab = [_typed(v, spec.integer) for v in spec.vocabulary] + [None]
            out[spec.name] = pd.Series([vocab[i] for i in index], dtype=object)
        return pd.DataFrame(out)

    def contributions(
        self, feature_nll: np.ndarray, baseline: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        """Each column's contribution to a score (its NLL minus its calibration median)."""
        return feature_nll - baseline[None, :], self.columns

    def to_json(self) -> str:
        data = asdict(self)
        for spec in data["numeric"]:  # asinh specs keep the older bundles' form
            if not spec["knots"]:
                del spec["knots"], spec["levels"]
        for spec in data["categorical"]:  # non-boolean specs keep the older bundles' form
            if not spec["boolean"]:
                del spec["boolean"]
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TabularEncoding:
        data = json.loads(text)
        return cls(
            numeric=tuple(_numeric_from_json(s) for s in data["numeric"]),
            categorical=tuple(
                CategoricalSpec(
                    s["name"], tuple(s["vocabulary"]), s["integer"], s.get("boolean", False)
                )
                for s in data["categorical"]
            ),
        )


def _numeric_from_json(data: dict) -> NumericSpec:
    knots, levels = tuple(data.pop("knots", ())), tuple(data.pop("levels", ()))
    return NumericSpec(**data, knots=knots, levels=levels)


def _typed(value: str, integer: bool) -> object:
    return int(value) if integer else value


def encoding_from_statistics(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
    kinds: Mapping[str, str],
    max_vocabulary: int,
    numeric_scaling: str = "std",
) -> TabularEncoding:
    """Derive the encoding from training statistics (TFDV) and the column kinds.

    `numeric_scaling` is `std`, `iqr` or `quantile` (see the module docstring).
    """
    if numeric_scaling not in NUMERIC_SCALINGS:
        raise ValueError(
            f"numeric_scaling must be one of {NUMERIC_SCALINGS}. Received: {numeric_scaling!r}"
        )
    by_name = feature_stats(stats)
    numeric, categorical = [], []
    for name, kind in kinds.items():
        feature = by_name.get(name)
        if kind == NUMERIC:
            numeric.append(_numeric_spec(name, feature, numeric_scaling))
        elif kind == BOOLEAN:
            # Both values, even if training saw one: the other is then rare, not unknown.
            categorical.append(CategoricalSpec(name, (FALSE, TRUE), boolean=True))
        else:
            vocab = _vocabulary(feature, max_vocabulary)
            categorical.append(CategoricalSpec(name, vocab, integer=kind == INT_CATEGORICAL))
    return TabularEncoding(tuple(numeric), tuple(categorical))


def _numeric_spec(name: str, feature, scaling: str) -> NumericSpec:
    if feature is None or not feature.HasField("num_stats"):
        return NumericSpec(name, 0.0, 1.0)  # never observed: all values will be masked
    num = feature.num_stats
    q25, q50, q75 = (quantile(num, q) for q in (0.25, 0.5, 0.75))
    center = q50 if q50 is not None else num.median
    scale = 0.0
    if scaling == "iqr" and q25 is not None and q75 is not None:
        scale = (q75 - q25) / IQR_TO_STD
    if not scale > 1e-12:
        scale = num.std_dev
    if not scale > 1e-12:
        scale = 1.0  # a constant column: any change from the constant is what stands out
    if scaling == "quantile":
        knots, levels = _rank_knots(num)
        return NumericSpec(name, float(center), float(scale), knots, levels)
    return NumericSpec(name, float(center), float(scale))


def _rank_knots(num) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The training CDF at the quantile histogram's distinct boundaries.

    A value repeated over several boundaries (a point mass: zeros, discrete levels) takes its mid
    rank, so equal values map to one z. Levels use the plotting position (n F + 1/2) / (n + 1):
    the extremes of n rows sit near +-Phi^-1(1 - 1/(2n)), not at infinity.
    """
    hist = quantile_histogram(num)
    if hist is None:
        return (), ()
    bounds = [hist.buckets[0].low_value] + [b.high_value for b in hist.buckets]
    bounds = np.maximum.accumulate(np.asarray(bounds, dtype=np.float64))
    ranks = np.linspace(0.0, 1.0, len(bounds))
    knots, first = np.unique(bounds, return_index=True)
    last = np.append(first[1:], len(bounds)) - 1
    n = max(float(num.common_stats.num_non_missing), 1.0)
    levels = ((ranks[first] + ranks[last]) / 2 * n + 0.5) / (n + 1)
    return tuple(float(k) for k in knots), tuple(float(p) for p in levels)


def _vocabulary(feature, max_vocabulary: int) -> tuple[str, ...]:
    if feature is None:
        return ()
    string_stats = feature.string_stats
    values = [v.value for v in string_stats.top_values][:max_vocabulary]
    return tuple(values)
