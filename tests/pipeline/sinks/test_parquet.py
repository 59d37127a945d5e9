"""pipeline.sinks.parquet: dead letters and Arrow tables written by a real DirectRunner pipeline
read back row for row."""

from __future__ import annotations

import glob

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from pipeline.core.records import DEAD_LETTER_COLUMNS, DeadLetter
from pipeline.sinks.parquet import WriteDeadLetters, WriteTables, dead_letter_schema

LETTERS = [
    DeadLetter("in.csv:2", "in.csv", "parse", "column_count", "3 values", "a,b,c"),
    DeadLetter("in.csv:5", "in.csv", "type", "not_a_number", "x is 'abc'", "abc,1", field="x"),
]


def test_dead_letter_schema_is_all_strings_in_the_column_order():
    schema = dead_letter_schema()
    assert tuple(schema.names) == DEAD_LETTER_COLUMNS
    assert all(f.type == pa.string() for f in schema)


def test_dead_letters_round_trip(tmp_path):
    with BeamTestPipeline() as p:
        _ = p | beam.Create(LETTERS) | WriteDeadLetters(str(tmp_path / "dead_letter"))
    files = glob.glob(str(tmp_path / "dead_letter" / "part*.parquet"))
    assert len(files) == 1  # one shard
    back = pd.read_parquet(files[0]).sort_values("record_id").reset_index(drop=True)
    assert tuple(back.columns) == DEAD_LETTER_COLUMNS
    expected = pd.DataFrame([d.as_row() for d in LETTERS], columns=list(DEAD_LETTER_COLUMNS))
    pd.testing.assert_frame_equal(back, expected)


def test_no_dead_letters_still_writes_an_empty_table_with_the_schema(tmp_path):
    with BeamTestPipeline() as p:
        empty = p | beam.Create([]).with_output_types(DeadLetter)
        _ = empty | WriteDeadLetters(str(tmp_path / "dead_letter"))
    files = glob.glob(str(tmp_path / "dead_letter" / "part*.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 0 and table.schema.names == list(DEAD_LETTER_COLUMNS)


def test_tables_of_one_schema_round_trip(tmp_path):
    schema = pa.schema([("record_id", pa.string()), ("score", pa.float64()),
                        ("code", pa.list_(pa.int8()))])  # fmt: skip
    tables = [
        pa.table({"record_id": ["a", "b"], "score": [1.0, 2.5], "code": [[1, -1], [0, 2]]},
                 schema=schema),
        pa.table({"record_id": ["c"], "score": [None], "code": [[127, -127]]}, schema=schema),
    ]  # fmt: skip
    with BeamTestPipeline() as p:
        _ = p | beam.Create(tables) | WriteTables(str(tmp_path / "flags"), schema, num_shards=2)
    files = sorted(glob.glob(str(tmp_path / "flags" / "part*.parquet")))
    assert len(files) == 2
    back = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("record_id")
    assert back.schema == schema
    assert back.to_pylist() == pa.concat_tables(tables).to_pylist()
