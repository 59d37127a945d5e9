"""The tabular encoding: records <-> packed model input, and its derivation from TFDV stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NUMERIC
from pipeline.features.statistics import feature_stats
from pipeline.features.tabular_encoding import (
    IQR_TO_STD,
    CategoricalSpec,
    NumericSpec,
    TabularEncoding,
    encoding_from_statistics,
)
from vae_model import FeatureLayout, validate_packed

ENCODING = TabularEncoding(
    numeric=(NumericSpec("bytes", 1000.0, 250.0), NumericSpec("temp", -3.5, 0.5)),
    categorical=(
        CategoricalSpec("proto", ("tcp", "udp", "icmp")),
        CategoricalSpec("flag", ("0", "1"), integer=True),
    ),
)


def frame(**columns) -> pd.DataFrame:
    defaults = {"bytes": [1000.0], "temp": [-3.5], "proto": ["tcp"], "flag": ["0"]}
    data = {**defaults, **columns}
    n = max(len(v) for v in data.values())
    return pd.DataFrame({k: (v * n if len(v) == 1 else v) for k, v in data.items()})


def test_columns_kinds_and_layout():
    assert ENCODING.columns == ["bytes", "temp", "proto", "flag"]
    assert ENCODING.kinds == {
        "bytes": NUMERIC,
        "temp": NUMERIC,
        "proto": CATEGORICAL,
        "flag": INT_CATEGORICAL,
    }
    assert ENCODING.layout() == FeatureLayout(
        numeric=("bytes", "temp"), categorical=(("proto", 4), ("flag", 3))
    )


def test_encode_is_the_documented_closed_form():
    x = ENCODING.encode(frame(bytes=[1000.0, 1250.0, 0.0], proto=["tcp", "udp", "icmp"]))
    assert x.dtype == np.float32 and x.shape == (3, 8)
    np.testing.assert_allclose(x[:, 0], np.arcsinh([0.0, 1.0, -4.0]), rtol=1e-6)
    np.testing.assert_array_equal(x[:, 2], [0, 1, 2])
    np.testing.assert_array_equal(x[:, 4:], 1.0)  # everything observed
    validate_packed(x, ENCODING.layout())


def test_numeric_round_trip():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(1000.0, 300.0, 50), [1000.0, 1e6, -1e6, 0.0]])
    temps = rng.normal(-3.5, 2.0, len(values))
    records = frame(bytes=list(values), temp=list(temps))
    decoded = ENCODING.decode(ENCODING.encode(records)[:, :4])
    # The packed input is float32, so the error is relative to the distance from the centre
    # (plus a scale-sized floor), not to the value itself: 0 bytes is 4 scales from 1000.
    for spec, original in zip(ENCODING.numeric, (values, temps), strict=True):
        np.testing.assert_allclose(
            decoded[spec.name] - spec.center,
            original - spec.center,
            rtol=1e-6,
            atol=1e-6 * spec.scale,
        )


def test_category_round_trip():
    records = frame(proto=["udp", "tcp", "icmp", "udp"], flag=["1", "0", "1", "1"])
    decoded = ENCODING.decode(ENCODING.encode(records)[:, :4])
    assert decoded["proto"].tolist() == ["udp", "tcp", "icmp", "udp"]
    # Integer categories decode to integers (their type in the original data).
    assert decoded["flag"].tolist() == [1, 0, 1, 1]


def test_unseen_values_go_to_the_oov_bucket_and_decode_to_none():
    x = ENCODING.encode(frame(proto=["tcp", "sctp"], flag=["1", "7"]))
    np.testing.assert_array_equal(x[:, 2], [0, 3])  # oov_index = len(vocabulary)
    np.testing.assert_array_equal(x[:, 3], [1, 2])
    np.testing.assert_array_equal(x[:, 6:], 1.0)  # OOV is observed, not missing
    validate_packed(x, ENCODING.layout())
    decoded = ENCODING.decode(x[:, :4])
    assert decoded["proto"].tolist() == ["tcp", None]
    assert decoded["flag"].tolist() == [1, None]


def test_missing_values_have_mask_zero_and_value_zero():
    x = ENCODING.encode(
        frame(bytes=[np.nan, 1250.0], temp=[0.0, np.nan], proto=[None, "udp"], flag=["1", None])
    )
    values, mask = x[:, :4], x[:, 4:]
    np.testing.assert_array_equal(mask, [[0, 1, 0, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(values[mask == 0], 0.0)
    assert np.isfinite(x).all()
    validate_packed(x, ENCODING.layout())


def test_column_order_of_the_input_frame_does_not_matter():
    records = frame(bytes=[1.0, 2000.0], proto=["udp", None], flag=["1", "0"])
    shuffled = records[["flag", "temp", "proto", "bytes"]]
    with_extra = records.assign(label=["a", "b"])[["label", "proto", "bytes", "flag", "temp"]]
    np.testing.assert_array_equal(ENCODING.encode(shuffled), ENCODING.encode(records))
    np.testing.assert_array_equal(ENCODING.encode(with_extra), ENCODING.encode(records))


def test_heavy_tailed_values_stay_small_after_asinh():
    spec = NumericSpec("bytes", 100.0, 10.0)
    encoding = TabularEncoding((spec,), ())
    values = np.array([100.0, 1e3, 1e6, 1e9, 1e12, -1e12])
    z = encoding.encode(pd.DataFrame({"bytes": values}))[:, 0]
    u = (values - spec.center) / spec.scale
    np.testing.assert_allclose(z, np.arcsinh(u), rtol=1e-6)
    # asinh(u) <= log(2|u|) + 1/(4u^2): logarithmic growth in the tails.
    big = np.abs(u) > 1
    assert (np.abs(z[big]) <= np.log(2 * np.abs(u[big])) + 1e-3).all()
    assert np.abs(z).max() < 30


def test_from_json_round_trip():
    text = ENCODING.to_json()
    again = TabularEncoding.from_json(text)
    assert again == ENCODING
    assert isinstance(again.categorical[0].vocabulary, tuple)
    assert again.to_json() == text


# ---------------------------------------------------------- derived from real TFDV statistics


def test_encoding_from_statistics(stats_run):
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10, "iqr")
    specs = {s.name: s for s in encoding.numeric}
    cats = {s.name: s for s in encoding.categorical}
    assert set(specs) == {"empty", "k", "x"} and set(cats) == {"c", "i"}

    x = stats_run.frame["x"].dropna().to_numpy()
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    assert specs["x"].center == pytest.approx(q50, abs=0.01 * np.ptp(x))
    assert specs["x"].scale == pytest.approx((q75 - q25) / IQR_TO_STD, rel=0.02)

    # A constant column is centred on its value with scale 1; a never-seen one is (0, 1).
    assert (specs["k"].center, specs["k"].scale) == (pytest.approx(5.0), 1.0)
    assert (specs["empty"].center, specs["empty"].scale) == (0.0, 1.0)

    assert cats["c"].vocabulary == ("a", "b", "c")  # most frequent first
    assert not cats["c"].integer
    assert set(cats["i"].vocabulary) == {"0", "1", "2"} and cats["i"].integer


def test_encoding_from_statistics_truncates_the_vocabulary(stats_run):
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 2)
    cats = {s.name: s for s in encoding.categorical}
    assert cats["c"].vocabulary == ("a", "b")
    x = encoding.encode(stats_run.frame.head(1).assign(c=["c"]))
    assert x[0, encoding.columns.index("c")] == cats["c"].oov_index


def test_constant_column_encodes_finite(stats_run):
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10)
    x = encoding.encode(stats_run.frame)
    k = encoding.columns.index("k")
    np.testing.assert_allclose(x[:, k], 0.0, atol=1e-6)
    assert np.isfinite(x).all()
    off = encoding.encode(stats_run.frame.head(1).assign(k=[7.0]))
    assert off[0, k] == pytest.approx(np.arcsinh(2.0), rel=1e-6)
    validate_packed(x, encoding.layout())


def test_encoded_training_frame_is_centred(stats_run):
    """With IQR scaling: median near 0 and quartiles near +-asinh(0.674) on the training data."""
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10, "iqr")
    x = encoding.encode(stats_run.frame)
    j = encoding.columns.index("x")
    z = x[x[:, len(encoding.columns) + j] == 1, j]
    assert len(z) == feature_stats(stats_run.plain)["x"].num_stats.common_stats.num_non_missing
    assert np.median(z) == pytest.approx(0.0, abs=0.02)
    q25, q75 = np.quantile(z, [0.25, 0.75])
    assert q75 - q25 == pytest.approx(2 * np.arcsinh(IQR_TO_STD / 2), rel=0.03)


def test_encoding_from_statistics_with_std_scaling(stats_run):
    """`data.numeric_scaling: std` (the default) keeps the median as centre, scales by the std."""
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10)
    specs = {s.name: s for s in encoding.numeric}
    x = stats_run.frame["x"].dropna().to_numpy()
    assert specs["x"].center == pytest.approx(np.median(x), abs=0.01 * np.ptp(x))
    assert specs["x"].scale == pytest.approx(np.std(x), rel=0.01)
    assert (specs["k"].center, specs["k"].scale) == (pytest.approx(5.0), 1.0)
    with pytest.raises(ValueError, match="Received: 'mad'"):
        encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10, "mad")


# ---------------------------------------------------------- rank-Gaussian (quantile) scaling


def test_quantile_scaling_makes_the_training_column_standard_normal(stats_run):
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10, "quantile")
    x = encoding.encode(stats_run.frame)
    j = encoding.columns.index("x")
    z = x[x[:, len(encoding.columns) + j] == 1, j]
    # x is uniform on [0, 10]: Phi^-1 of its CDF is N(0, 1), up to the 5% buckets' sketch.
    assert np.mean(z) == pytest.approx(0.0, abs=0.03)
    assert np.std(z) == pytest.approx(1.0, abs=0.05)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert np.quantile(z, q) == pytest.approx(norm.ppf(q), abs=0.05)
    order = np.argsort(stats_run.frame["x"].to_numpy()[x[:, len(encoding.columns) + j] == 1])
    assert (np.diff(z[order]) >= 0).all()  # the map keeps the order of the values


def test_quantile_scaling_round_trips_inside_and_beyond_the_training_range(stats_run):
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10, "quantile")
    spec = {s.name: s for s in encoding.numeric}["x"]
    values = np.array([0.0, 0.01, 2.5, 5.0, 9.99, 10.0, 10.5, -3.0, 1e6, -1e6])
    z = spec.forward(values)
    assert np.isfinite(z).all() and (np.diff(z[:7]) > 0).all()
    np.testing.assert_allclose(spec.inverse(z), values, rtol=1e-9, atol=1e-9)
    # Beyond the training range the tail grows as asinh in units of the std, from the end's z.
    high = spec.knots[-1]
    z_high = spec.forward(np.array([high]))[0]
    assert z[8] == pytest.approx(z_high + np.arcsinh((1e6 - high) / spec.scale))
    packed = encoding.encode(stats_run.frame.head(len(values)).assign(x=values))
    decoded = encoding.decode(packed[:, : len(encoding.columns)])
    np.testing.assert_allclose(decoded["x"], values, rtol=1e-5, atol=1e-5)  # float32 z


def test_quantile_scaling_gives_ties_their_mid_rank():
    """A point mass over several boundaries maps to one level: the mean of their ranks."""
    bounds = [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]  # 5 buckets: 60% of the rows are 0
    hist = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        hist.buckets.add(low_value=low, high_value=high, sample_count=20.0)
    num = statistics_pb2.NumericStatistics(std_dev=0.8, median=0.0)
    num.common_stats.num_non_missing = 99
    num.histograms.append(hist)
    feature = statistics_pb2.FeatureNameStatistics(num_stats=num)
    feature.path.step.append("n")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.datasets.add().features.append(feature)
    spec = encoding_from_statistics(stats, {"n": NUMERIC}, 10, "quantile").numeric[0]
    assert spec.knots == (0.0, 1.0, 2.0)
    # Ranks 0, .2, .4, .6 average to .3; the plotting position (100 F + .5) / 100 keeps 2.0 finite.
    np.testing.assert_allclose(spec.levels, [(99 * p + 0.5) / 100 for p in (0.3, 0.8, 1.0)])
    assert spec.forward(np.array([0.0]))[0] == pytest.approx(norm.ppf((99 * 0.3 + 0.5) / 100))


def test_quantile_scaling_of_a_constant_column_and_json(stats_run):
    encoding = encoding_from_statistics(stats_run.with_int_schema, stats_run.kinds, 10, "quantile")
    x = encoding.encode(stats_run.frame.head(2).assign(k=[5.0, 7.0]))
    k = encoding.columns.index("k")
    np.testing.assert_allclose(x[:, k], [0.0, np.arcsinh(2.0)], rtol=1e-6, atol=1e-6)
    again = TabularEncoding.from_json(encoding.to_json())
    assert again == encoding and {s.name: s for s in again.numeric}["x"].knots
    assert "knots" not in ENCODING.to_json()  # asinh specs keep the older bundles' form


def test_boolean_columns_encode_false_true_and_old_json_still_loads():
    from pipeline.features.column_types import BOOLEAN

    encoding = TabularEncoding((), (CategoricalSpec("b", ("false", "true"), boolean=True),))
    assert encoding.kinds == {"b": BOOLEAN}
    frame = pd.DataFrame({"b": pd.Series(["true", "false", None, "maybe"], dtype=object)})
    packed = encoding.encode(frame)
    np.testing.assert_array_equal(packed[:, 0], [1, 0, 0, 2])  # 2: the OOV bucket
    np.testing.assert_array_equal(packed[:, 1], [1, 1, 0, 1])
    assert TabularEncoding.from_json(encoding.to_json()) == encoding
    # A bundle written before booleans existed: its JSON has no "boolean" key, and a
    # non-boolean spec is still written without one.
    plain = TabularEncoding((), (CategoricalSpec("c", ("a",), integer=False),))
    assert '"boolean"' not in plain.to_json()
    assert TabularEncoding.from_json(plain.to_json()) == plain
