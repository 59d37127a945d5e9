"""The bundle's optional record_columns.json part: what decode needs to give records back in the
input's column order, names and types."""

from __future__ import annotations

import pandas as pd

from configs.schema import DataConfig
from pipeline.artifacts.bundle import (
    COLUMNS_FILE,
    PARTS,
    RecordColumns,
    parts_in,
    record_columns,
)
from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NUMERIC, RecordChunk
from pipeline.features.column_types import ProfileColumns, decide_kinds


def profiles_of(frame: pd.DataFrame) -> dict:
    profile = ProfileColumns(2)
    acc = profile.create_accumulator()
    chunk = RecordChunk("t.csv", [str(i) for i in range(len(frame))], [""] * len(frame),
                        frame.astype(str).astype(object))  # fmt: skip
    return profile.extract_output(profile.add_input(acc, chunk))


def test_columns_keep_the_input_order_and_integer_numbers_decode_as_int64():
    frame = pd.DataFrame(
        {
            "zeta": [1.5, 2.25, 3.0, 4.0],  # float
            "count": [10, 20, 35, 7],  # integers, many values: numeric, decoded as int64
            "flag": [0, 1, 1, 0],  # integer category
            "city": ["a", "b", "a", "c"],
            "label": [0, 1, 0, 0],  # excluded
        }
    )
    profiles = profiles_of(frame)
    kinds = decide_kinds(profiles, DataConfig(exclude_columns=("label",)), 2)
    assert kinds == {
        "city": CATEGORICAL,
        "count": NUMERIC,
        "flag": INT_CATEGORICAL,
        "zeta": NUMERIC,
    }  # fmt: skip  (sorted by name: no order kept there)
    columns = record_columns(profiles, kinds, "id")
    assert columns == RecordColumns(
        "id", (("zeta", "float64"), ("count", "int64"), ("flag", "int64"), ("city", "string"))
    )
    assert RecordColumns.from_json(columns.to_json()) == columns


def test_a_column_the_profiles_lack_comes_last_and_never_observed_numbers_stay_float():
    frame = pd.DataFrame({"b": ["x", "y"], "a": [None, None]})
    profiles = profiles_of(frame.fillna(""))
    columns = record_columns(profiles, {"a": NUMERIC, "b": CATEGORICAL, "c": NUMERIC}, None)
    assert columns.columns == (("b", "string"), ("a", "float64"), ("c", "float64"))


def test_the_manifest_covers_the_optional_part_only_when_present(tmp_path):
    for name in PARTS:
        (tmp_path / name).write_text("x")
    assert parts_in(str(tmp_path)) == list(PARTS)
    (tmp_path / COLUMNS_FILE).write_text("{}")
    assert parts_in(str(tmp_path)) == [*PARTS, COLUMNS_FILE]
