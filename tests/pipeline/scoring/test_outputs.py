"""From score terms to outputs: attribution, flags tables, quantised latent codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.scoring.outputs import (
    code_format,
    codes_schema,
    codes_table,
    dequantize,
    flags_schema,
    flags_table,
    quantize,
    top_contributions,
)

NAMES = ["bytes", "temp", "proto", "flag"]


# -------------------------------------------------------------------------- attribution


def test_top_contributions_are_largest_first_relative_to_the_baseline():
    nll = np.array([[1.0, 5.0, 2.0, 0.0], [3.0, 3.0, 9.0, 1.0]])
    baseline = np.array([0.5, 1.0, 2.0, -1.0])
    index, value = top_contributions(nll, baseline, 3)
    # contributions: row 0 [0.5, 4, 0, 1]; row 1 [2.5, 2, 7, 2]
    np.testing.assert_array_equal(index, [[1, 3, 0], [2, 0, 1]])
    np.testing.assert_allclose(value, [[4.0, 1.0, 0.5], [7.0, 2.5, 2.0]])


def test_top_contributions_ties_keep_feature_order():
    index, _ = top_contributions(np.zeros((1, 4)), np.zeros(4), 4)
    np.testing.assert_array_equal(index, [[0, 1, 2, 3]])


def test_top_contributions_k_larger_than_width_is_clipped():
    index, value = top_contributions(np.array([[1.0, 2.0]]), np.zeros(2), 5)
    assert index.shape == value.shape == (1, 2)
    np.testing.assert_array_equal(index, [[1, 0]])


def test_top_contributions_match_a_full_sort():
    rng = np.random.default_rng(0)
    nll, baseline = rng.normal(size=(50, 6)), rng.normal(size=6)
    index, value = top_contributions(nll, baseline, 3)
    contributions = nll - baseline
    expected = -np.sort(-contributions, axis=1)[:, :3]
    np.testing.assert_allclose(value, expected)
    np.testing.assert_allclose(np.take_along_axis(contributions, index, axis=1), value)


# --------------------------------------------------------------------------- quantising


def test_int8_error_is_at_most_half_a_step_inside_the_range():
    rng = np.random.default_rng(1)
    scale = np.array([0.01, 0.1, 0.05], dtype=np.float32)
    z = rng.uniform(-127, 127, size=(500, 3)).astype(np.float32) * scale
    code = quantize(z, scale, "int8")
    assert code.dtype == np.int8
    error = np.abs(dequantize(code, scale, "int8") - z)
    assert (error <= scale / 2 + 1e-7).all()


def test_int8_clips_outside_the_range():
    scale = np.array([0.1, 1.0], dtype=np.float32)
    z = np.array([[100.0, -1000.0], [-12.7, 127.0]], dtype=np.float32)
    code = quantize(z, scale, "int8")
    np.testing.assert_array_equal(code, [[127, -127], [-127, 127]])
    np.testing.assert_allclose(dequantize(code, scale, "int8"), [[12.7, -127.0], [-12.7, 127.0]])


@pytest.mark.parametrize(("dtype", "rtol"), [("float16", 1e-3), ("float32", 0.0)])
def test_float_codes(dtype, rtol):
    z = np.array([[0.123456, -3.5], [1e-3, 2.0]], dtype=np.float32)
    code = quantize(z, np.ones(2), dtype)
    assert code.dtype == np.dtype(dtype)
    np.testing.assert_allclose(dequantize(code, np.ones(2), dtype), z, rtol=rtol)


@pytest.mark.parametrize("dtype", ["int8", "float16", "float32"])
def test_codes_table_round_trips_through_parquet_with_its_metadata(tmp_path, dtype):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(6, 3)).astype(np.float32)
    scale = np.array([0.03, 0.02, 0.05], dtype=np.float32)
    schema = codes_schema(3, dtype, scale.tolist() if dtype == "int8" else [])
    code = quantize(z, scale, dtype)
    ids = [f"r{i}" for i in range(6)]
    table = codes_table(ids, code, schema)
    assert table.schema.equals(schema, check_metadata=True)
    pq.write_table(table, tmp_path / "codes.parquet")

    back = pq.read_table(tmp_path / "codes.parquet")
    meta = code_format(back.schema)
    assert meta["dtype"] == dtype and meta["latent_dim"] == 3
    assert back.column("record_id").to_pylist() == ids
    # Read back the way `vaepipe decode` does: flatten the fixed-size lists, dequantise.
    column = back.column("code").combine_chunks()
    assert column.type.list_size == 3
    stored = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, 3)
    restored = dequantize(stored, np.asarray(meta["scale"]), meta["dtype"])
    np.testing.assert_array_equal(restored, dequantize(code, scale, dtype))
    step = scale / 2 if dtype == "int8" else np.abs(z) * 1e-3
    assert (np.abs(restored - z) <= step + 1e-7).all()


def test_code_format_without_metadata_is_an_error():
    with pytest.raises(ValueError, match="carry no vaepipe code metadata"):
        code_format(pa.schema([("record_id", pa.string())]))


# -------------------------------------------------------------------------------- flags


def _terms(score, nll) -> dict:
    score = np.asarray(score, dtype=np.float32)
    return {
        "score": score,
        "reconstruction_nll": score - 0.5,
        "kl": np.full(len(score), 0.5, dtype=np.float32),
        "feature_nll": np.asarray(nll, dtype=np.float32),
    }


def test_flags_table_columns_and_values():
    schema = flags_schema(2, ["label", "ts"])
    assert schema.names == [
        "record_id",
        "score",
        "reconstruction_nll",
        "kl",
        "p_value",
        "is_anomaly",
        "top_feature_1",
        "top_contribution_1",
        "top_feature_2",
        "top_contribution_2",
        "label",
        "ts",
    ]
    terms = _terms([1.0, 9.0, 5.0], [[0, 0, 3, 0], [9, 0, 0, 1], [0, 2, 0, 0]])
    passthrough = pd.DataFrame({"label": ["x", None, 3]})  # ts is absent
    table = flags_table(
        ["a", "b", "c"],
        terms,
        np.array([0.9, 0.01, 0.5]),
        threshold=5.0,
        baseline=np.zeros(4),
        feature_names=NAMES,
        passthrough=passthrough,
        schema=schema,
        top_features=2,
    )
    assert table.schema.equals(schema)
    rows = table.to_pylist()
    assert [r["record_id"] for r in rows] == ["a", "b", "c"]
    assert [r["is_anomaly"] for r in rows] == [False, True, False]  # strictly above threshold
    assert [r["top_feature_1"] for r in rows] == ["proto", "bytes", "temp"]
    assert [r["top_contribution_1"] for r in rows] == [3.0, 9.0, 2.0]
    assert rows[1]["top_feature_2"] == "flag"
    assert [r["p_value"] for r in rows] == [0.9, 0.01, 0.5]
    assert [r["kl"] for r in rows] == [0.5, 0.5, 0.5]
    assert [r["label"] for r in rows] == ["x", None, "3"]  # passthrough as text
    assert [r["ts"] for r in rows] == [None, None, None]


def test_flags_table_with_fewer_features_than_top_features():
    """scoring.top_features defaults to 3; a model with 2 features fills the rest with nulls."""
    schema = flags_schema(3, [])
    table = flags_table(
        ["a"],
        _terms([2.0], [[0.0, 1.0]]),
        np.array([0.5]),
        threshold=1.0,
        baseline=np.zeros(2),
        feature_names=["u", "v"],
        passthrough=pd.DataFrame(),
        schema=schema,
        top_features=3,
    )
    [row] = table.to_pylist()
    assert (row["top_feature_1"], row["top_feature_2"], row["top_feature_3"]) == ("v", "u", None)
    assert row["top_contribution_3"] is None
