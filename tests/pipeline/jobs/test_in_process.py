"""In-process stages: DataFrame chunks, their ids, typing dead letters, the tables-only rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import ConfigError, load_config
from pipeline.core.records import NOT_A_NUMBER, NUMERIC
from pipeline.features.column_types import apply_kinds
from pipeline.jobs.in_process import FRAME_SOURCE, concat_chunks, frame_chunk, read_chunks


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"key": ["a", "b", "c"], "x": [1.5, np.nan, 3.0]}, index=[7, 8, 9])


def test_frame_chunk_ids_without_an_id_column():
    chunk, dead = frame_chunk(_frame(), load_config())
    assert dead == []
    assert chunk.source == FRAME_SOURCE
    assert chunk.record_ids == ["dataframe:1", "dataframe:2", "dataframe:3"]  # not the index
    assert chunk.frame["x"].tolist() == [1.5, None, 3.0]  # missing as None, like Parquet
    assert chunk.raw[0] == '{"key": "a", "x": 1.5}'


def test_frame_chunk_ids_from_the_id_column():
    chunk, dead = frame_chunk(_frame(), load_config(overrides=["data.id_column=key"]))
    assert dead == []
    assert chunk.record_ids == ["a", "b", "c"]
    assert list(chunk.frame.columns) == ["x"]


def test_a_text_value_in_a_number_column_is_a_dead_letter_naming_the_field():
    frame = pd.DataFrame({"x": [1.0, "lots", 3.0]})
    chunk, _ = frame_chunk(frame, load_config())
    typed, dead = apply_kinds(chunk, {"x": NUMERIC})
    assert typed.record_ids == ["dataframe:1", "dataframe:3"]
    assert typed.frame["x"].tolist() == [1.0, 3.0]
    (letter,) = dead
    assert (letter.record_id, letter.reason, letter.field) == ("dataframe:2", NOT_A_NUMBER, "x")
    assert "lots" in letter.raw


def test_read_chunks_of_a_dataframe_is_one_chunk():
    ((chunk, dead),) = list(read_chunks(_frame(), load_config()))
    assert len(chunk) == 3 and dead == []


def test_read_chunks_refuses_images():
    config = load_config(overrides=["data.kind=image"])
    with pytest.raises(ConfigError, match="in-process jobs read tables; data.kind image"):
        list(read_chunks(_frame(), config))


def test_concat_chunks_keeps_every_row_and_refuses_none():
    a, _ = frame_chunk(_frame(), load_config())
    b, _ = frame_chunk(_frame().iloc[:1], load_config())
    both = concat_chunks([a, b])
    assert both.record_ids == [*a.record_ids, *b.record_ids] and len(both.frame) == 4
    with pytest.raises(ValueError, match="no usable records: every record was dead-lettered"):
        concat_chunks([])
