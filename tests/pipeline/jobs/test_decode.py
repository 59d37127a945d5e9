"""Decoded tables in the input's columns, and the driver's checks of the codes it is given."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts.bundle import RecordColumns
from pipeline.core.errors import BundleError
from pipeline.features.tabular_encoding import CategoricalSpec, NumericSpec, TabularEncoding
from pipeline.jobs.decode import check_codes
from pipeline.kinds.tabular import KIND
from pipeline.scoring.outputs import codes_schema, codes_table

ENCODING = TabularEncoding(
    numeric=(NumericSpec("amount", 0.0, 1.0), NumericSpec("visits", 3.0, 1.0)),
    categorical=(CategoricalSpec("city", ("a", "b")), CategoricalSpec("flag", ("0", "1"), True)),
)
# Packed decoder values: amount z, visits z, city index, flag index.
VALUES = np.array([[0.5, 0.063, 1.0, 0.0], [-0.25, -1.2, 2.0, 1.0]], dtype=np.float32)


def test_without_recorded_columns_decode_is_as_before():
    table = KIND.decoded_table(ENCODING, ["r1", "r2"], VALUES, "unused")
    assert table.schema.names == ["record_id", "amount", "visits", "city", "flag"]
    assert table.schema.field("visits").type == pa.float64()


def test_recorded_columns_restore_order_names_and_integer_types():
    columns = RecordColumns(
        "id", (("city", "string"), ("visits", "int64"), ("flag", "int64"), ("amount", "float64"))
    )
    table = KIND.decoded_table(ENCODING, ["r1", "r2"], VALUES, "unused", columns=columns)
    assert table.schema.names == ["id", "city", "visits", "flag", "amount"]
    assert table.schema.field("visits").type == pa.int64()
    rows = table.to_pylist()
    # visits = 3 + sinh(0.063) = 3.063 -> 3; 3 + sinh(-1.2) = 1.49 -> 1
    assert [r["visits"] for r in rows] == [3, 1]
    assert [r["city"] for r in rows] == ["b", None]  # index 2 is the OOV bucket
    assert [r["id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["amount"] == pytest.approx(np.sinh(0.5))
    assert table.schema == KIND.decoded_schema(ENCODING, columns)


def write_codes(path, schema) -> str:
    table = codes_table(["a"], np.zeros((1, 3), np.int8), schema)
    pq.write_table(table, path)
    return str(path)


def bundle(sha: str) -> SimpleNamespace:
    return SimpleNamespace(directory="model/", manifest={"sha256": {"model.keras": sha}})


def test_codes_of_another_model_are_refused_naming_both(tmp_path):
    path = write_codes(tmp_path / "c.parquet", codes_schema(3, "int8", [0.1] * 3, "1" * 64))
    assert check_codes(path, bundle("1" * 64), 3) == []
    with pytest.raises(BundleError, match="another model.*1111111111111111.*model/.*2222"):
        check_codes(path, bundle("2" * 64), 3)
    with pytest.raises(BundleError, match="3 dimensions.*latent code of 4"):
        check_codes(path, bundle("1" * 64), 4)


def test_codes_without_a_fingerprint_are_decoded_with_a_note(tmp_path):
    path = write_codes(tmp_path / "c.parquet", codes_schema(3, "int8", [0.1] * 3))
    assert "names no model" in check_codes(path, bundle("1" * 64), 3)[0]


def test_a_parquet_file_that_holds_no_codes_is_named(tmp_path):
    path = tmp_path / "flags.parquet"
    pq.write_table(pa.table({"record_id": ["a"], "score": [1.0]}), path)
    with pytest.raises(BundleError, match="not a codes file.*codes/ folder"):
        check_codes(str(path), bundle("1" * 64), 3)
