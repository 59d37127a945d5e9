"""with_ids: the id column's values as strings, missing ids dead-lettered, derived ids."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from configs import load_config
from pipeline.core.records import MISSING_ID
from pipeline.sources.ids import with_ids

DATA = load_config().data


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": [7, None, 9], "x": ["a", "b", "c"]}, dtype=object)


def test_derived_ids_are_source_and_row_number():
    chunk, dead = with_ids(_frame(), ["r1", "r2", "r3"], [5, 6, 7], "f.csv", DATA, [])
    assert chunk.record_ids == ["f.csv:5", "f.csv:6", "f.csv:7"] and dead == []
    assert list(chunk.frame.columns) == ["id", "x"]  # no id column: nothing is dropped


def test_id_column_values_as_strings_and_missing_ids_dead_lettered():
    config = dataclasses.replace(DATA, id_column="id")
    chunk, dead = with_ids(_frame(), ["r1", "r2", "r3"], [1, 2, 3], "f.parquet", config, [])
    assert chunk.record_ids == ["7", "9"]
    assert chunk.raw == ["r1", "r3"]
    assert list(chunk.frame.columns) == ["x"] and chunk.frame["x"].tolist() == ["a", "c"]
    (letter,) = dead
    assert (letter.record_id, letter.reason, letter.raw) == ("f.parquet:2", MISSING_ID, "r2")
    assert letter.stage == "parse"
    assert letter.message == "record has no value in id column 'id'"


def test_the_readers_arrow_text_follows_the_kept_rows_without_the_id_column():
    import pyarrow as pa

    config = dataclasses.replace(DATA, id_column="id")
    text = pa.table({"id": ["7", None, "9"], "x": ["a", "b", "c"]})
    chunk, _ = with_ids(_frame(), ["r1", "r2", "r3"], [1, 2, 3], "f.csv", config, [], text)
    assert chunk.text.column_names == ["x"] and chunk.text.column("x").to_pylist() == ["a", "c"]
    assert chunk.take(pd.Series([False, True]).to_numpy()).text.column("x").to_pylist() == ["c"]


def test_all_ids_missing_is_no_chunk():
    config = dataclasses.replace(DATA, id_column="id")
    frame = pd.DataFrame({"id": [None, None], "x": [1, 2]}, dtype=object)
    earlier = ["earlier"]
    chunk, dead = with_ids(frame, ["a", "b"], [1, 2], "s", config, earlier)
    assert chunk is None and len(dead) == 3 and dead[0] == "earlier"


def test_an_absent_id_column_is_refused_by_name():
    config = dataclasses.replace(DATA, id_column="key")
    with pytest.raises(ValueError, match="f.csv: id column 'key' is not in the input"):
        with_ids(_frame(), ["a", "b", "c"], [1, 2, 3], "f.csv", config, [])
