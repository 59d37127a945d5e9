"""Parsing raw CSV lines, Arrow batches and tf.Examples into chunks plus dead letters."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from configs.schema import DataConfig
from pipeline.core.records import (
    BAD_UTF8,
    COLUMN_COUNT,
    CSV_QUOTING,
    DEAD_LETTER_COLUMNS,
    MISSING_ID,
    DeadLetter,
    RawLines,
)
from pipeline.sources.columnar import parse_arrow_batch, parse_examples
from pipeline.sources.csvfile import parse_csv_lines, parse_header

SOURCE = "data/part.csv"
COLUMNS = ["id", "x", "c"]


def numbered(*lines: bytes, start: int = 2) -> list[tuple[int, bytes]]:
    """Lines numbered as in a file with a header on line 1."""
    return list(enumerate(lines, start=start))


# ---------------------------------------------------------------------------- header


def test_header_names_are_stripped_and_bom_removed():
    assert parse_header(b"\xef\xbb\xbfid, x ,c\r\n", SOURCE, ",") == COLUMNS


def test_header_with_other_delimiter():
    assert parse_header(b"id;x;c\n", SOURCE, ";") == COLUMNS


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"id,x,x\n", r"empty or duplicated names: \['x'\]"),
        (b"id,,c\n", "empty or duplicated names"),
        (b"id,\xff,c\n", "cannot read the CSV header"),
    ],
)
def test_bad_header_is_an_error_naming_the_source(line, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_header(line, SOURCE, ",")
    assert str(err.value).startswith(SOURCE)


# ------------------------------------------------------------------------- CSV lines


def test_good_rows_become_one_chunk_with_derived_ids():
    chunk, dead = parse_csv_lines(
        numbered(b"1,2.5,a\n", b"2,,b\r\n", b'3,4,"x,y"\n'), COLUMNS, SOURCE, DataConfig()
    )
    assert dead == []
    assert chunk.source == SOURCE
    assert chunk.record_ids == [f"{SOURCE}:2", f"{SOURCE}:3", f"{SOURCE}:4"]
    assert chunk.raw == ["1,2.5,a", "2,,b", '3,4,"x,y"']
    assert list(chunk.frame.columns) == COLUMNS
    assert chunk.frame.to_dict("list") == {
        "id": ["1", "2", "3"],
        "x": ["2.5", None, "4"],  # an empty field is missing (None), values stay text
        "c": ["a", "b", "x,y"],
    }


def test_wrong_column_count_is_a_dead_letter_with_the_raw_line():
    chunk, dead = parse_csv_lines(
        numbered(b"1,2.5,a\n", b"2,3\n", b"3,4,c,extra\n"), COLUMNS, SOURCE, DataConfig()
    )
    assert chunk.record_ids == [f"{SOURCE}:2"]
    assert dead == [
        DeadLetter(
            f"{SOURCE}:3", SOURCE, "parse", COLUMN_COUNT, "expected 3 fields, found 2", "2,3"
        ),
        DeadLetter(
            f"{SOURCE}:4",
            SOURCE,
            "parse",
            COLUMN_COUNT,
            "expected 3 fields, found 4",
            "3,4,c,extra",
        ),
    ]


def test_bad_utf8_is_a_dead_letter_with_escaped_raw_text():
    chunk, dead = parse_csv_lines(
        numbered(b"1,2,a\n", b"2,3,caf\xe9\n"), COLUMNS, SOURCE, DataConfig()
    )
    assert len(chunk) == 1
    [letter] = dead
    assert letter.reason == BAD_UTF8
    assert letter.record_id == f"{SOURCE}:3"
    assert letter.raw == "2,3,caf\\xe9"
    assert "byte 7" in letter.message  # 0-based offset of \xe9


@pytest.mark.parametrize("line", [b'1,"a"b,c\n', b'1,"unterminated,c\n'])
def test_quoting_error_is_a_dead_letter(line):
    chunk, dead = parse_csv_lines(numbered(b"1,2,a\n", line), COLUMNS, SOURCE, DataConfig())
    assert len(chunk) == 1
    [letter] = dead
    assert letter.reason == CSV_QUOTING
    assert letter.raw == line.decode().rstrip("\n")
    assert letter.message.startswith("CSV quoting error")


def test_blank_lines_are_skipped_without_dead_letters():
    chunk, dead = parse_csv_lines(
        numbered(b"1,2,a\n", b"\n", b"   \r\n", b"2,3,b\n"), COLUMNS, SOURCE, DataConfig()
    )
    assert dead == []
    # Line numbers (and so ids) still count the blank lines.
    assert chunk.record_ids == [f"{SOURCE}:2", f"{SOURCE}:5"]


def test_only_bad_lines_give_no_chunk():
    chunk, dead = parse_csv_lines(numbered(b"1\n", b"\n"), COLUMNS, SOURCE, DataConfig())
    assert chunk is None
    assert [d.reason for d in dead] == [COLUMN_COUNT]


def test_every_line_is_either_a_row_or_a_dead_letter():
    lines = numbered(b"1,2,a\n", b"2,3\n", b"\xff,1,2\n", b'4,"5,6\n', b"5,6,7\n", b"6,7,8\n")
    chunk, dead = parse_csv_lines(lines, COLUMNS, SOURCE, DataConfig())
    assert len(chunk) + len(dead) == len(lines)
    assert sorted(chunk.record_ids + [d.record_id for d in dead]) == sorted(
        f"{SOURCE}:{n}" for n, _ in lines
    )


def test_other_delimiter():
    chunk, dead = parse_csv_lines(
        numbered(b"1;2,5;a\n"), COLUMNS, SOURCE, DataConfig(csv_delimiter=";")
    )
    assert dead == [] and chunk.frame.iloc[0].tolist() == ["1", "2,5", "a"]


# ------------------------------------------------------------------------- id column


def test_id_column_gives_ids_and_is_dropped_from_the_frame():
    chunk, dead = parse_csv_lines(
        numbered(b"r1,2,a\n", b"r2,3,b\n"), COLUMNS, SOURCE, DataConfig(id_column="id")
    )
    assert dead == []
    assert chunk.record_ids == ["r1", "r2"]
    assert list(chunk.frame.columns) == ["x", "c"]
    assert chunk.raw == ["r1,2,a", "r2,3,b"]


def test_missing_id_value_is_a_dead_letter_with_the_raw_line():
    chunk, dead = parse_csv_lines(
        numbered(b"r1,2,a\n", b",3,b\n", b"r3,4,c\n"), COLUMNS, SOURCE, DataConfig(id_column="id")
    )
    assert chunk.record_ids == ["r1", "r3"]
    assert chunk.raw == ["r1,2,a", "r3,4,c"]  # raw stays aligned with the kept rows
    assert chunk.frame["x"].tolist() == ["2", "4"]
    [letter] = dead
    assert letter.reason == MISSING_ID
    assert letter.record_id == f"{SOURCE}:3"
    assert letter.raw == ",3,b"
    assert "'id'" in letter.message


def test_all_ids_missing_gives_no_chunk():
    chunk, dead = parse_csv_lines(numbered(b",3,b\n"), COLUMNS, SOURCE, DataConfig(id_column="id"))
    assert chunk is None and [d.reason for d in dead] == [MISSING_ID]


def test_id_column_absent_from_input_is_an_error():
    with pytest.raises(ValueError, match="id column 'key' is not in the input"):
        parse_csv_lines(numbered(b"1,2,a\n"), COLUMNS, SOURCE, DataConfig(id_column="key"))


# ----------------------------------------------------------------------- Arrow batches


def test_arrow_batch_rows_numbered_from_first_row():
    batch = pa.RecordBatch.from_pydict({"x": [1.5, None], "c": ["a", None]})
    chunk, dead = parse_arrow_batch(batch, 10, "t.parquet", DataConfig())
    assert dead == []
    assert chunk.record_ids == ["t.parquet:11", "t.parquet:12"]
    assert chunk.frame.to_dict("list") == {"x": [1.5, None], "c": ["a", None]}
    assert [json.loads(r) for r in chunk.raw] == [{"x": 1.5, "c": "a"}, {"x": None, "c": None}]


def test_arrow_nullable_int_id_keeps_integer_spelling():
    """A null in an int column must not turn its values into floats (id 7, not 7.0)."""
    batch = pa.RecordBatch.from_pydict({"id": [7, None, 9], "x": [1.0, 2.0, 3.0]})
    chunk, dead = parse_arrow_batch(batch, 0, "t.parquet", DataConfig(id_column="id"))
    assert chunk.record_ids == ["7", "9"]
    [letter] = dead
    assert letter.reason == MISSING_ID and letter.record_id == "t.parquet:2"
    assert json.loads(letter.raw) == {"id": None, "x": 2.0}


def test_empty_arrow_batch_gives_nothing():
    batch = pa.RecordBatch.from_pydict({"x": pa.array([], pa.float64())})
    assert parse_arrow_batch(batch, 0, "t.parquet", DataConfig()) == (None, [])


# --------------------------------------------------------------------------- tf.Example


def _example(**features) -> bytes:
    feature = {}
    for name, value in features.items():
        if isinstance(value, float):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_examples_are_parsed_and_missing_features_are_none():
    records = [(1, _example(x=1.5, c=b"a", n=3)), (2, _example(x=2.5)), (3, b"not a proto")]
    chunk, dead = parse_examples(records, "t.tfrecord", DataConfig())
    assert chunk.record_ids == ["t.tfrecord:1", "t.tfrecord:2"]
    rows = chunk.frame.to_dict("records")
    assert rows[0] == {"x": 1.5, "c": "a", "n": 3}
    assert rows[1] == {"x": 2.5, "c": None, "n": None}
    [letter] = dead
    assert letter.reason == "bad_example" and letter.record_id == "t.tfrecord:3"
    assert letter.raw == repr(b"not a proto")


def test_dead_letter_rows_have_the_documented_columns():
    letter = DeadLetter("r", "s", "parse", COLUMN_COUNT, "m", "raw", field="x")
    assert tuple(letter.as_row()) == DEAD_LETTER_COLUMNS
    assert letter.as_row()["field"] == "x"


def test_plain_block_takes_the_arrow_path_and_keeps_raw_lines_as_bytes():
    lines = numbered(b"1,2.5,a\r\n", b"\n", b"2,,b\r\n", b"3,4,\xc3\xa9\n")
    chunk, dead = parse_csv_lines(lines, COLUMNS, SOURCE, DataConfig())
    assert dead == []
    assert isinstance(chunk.raw, RawLines)  # nothing decoded until a dead letter needs it
    assert chunk.raw == ["1,2.5,a", "2,,b", "3,4,é"]
    assert chunk.record_ids == [f"{SOURCE}:2", f"{SOURCE}:4", f"{SOURCE}:5"]
    assert chunk.frame.to_dict("list") == {
        "id": ["1", "2", "3"],
        "x": ["2.5", None, "4"],
        "c": ["a", "b", "é"],
    }
    kept = chunk.take(np.array([2, 0]))
    assert list(kept.raw) == ["3,4,é", "1,2.5,a"]
    assert [d.raw for d in chunk.dead_letters(np.array([1]), "type", "r", "m")] == ["2,,b"]


@pytest.mark.parametrize(
    "bad_line", [b"2,3\n", b"2,3,\xff\n", b"2,\r3,c\n", b'2,"3",c\n', b"2,3,c\x00\n"]
)
def test_a_block_with_one_bad_line_matches_the_per_line_parser(bad_line):
    lines = numbered(b"1,2,a\n", bad_line, b"3,4,c\n")
    chunk, dead = parse_csv_lines(lines, COLUMNS, SOURCE, DataConfig())
    good = [(n, line) for n, line in lines if line != bad_line]
    alone = [parse_csv_lines([pair], COLUMNS, SOURCE, DataConfig()) for pair in lines]
    assert chunk.record_ids[0] == f"{SOURCE}:2" and chunk.record_ids[-1] == f"{SOURCE}:4"
    assert len(chunk) + len(dead) == sum(len(c or []) + len(d) for c, d in alone)
    assert len(good) == 2 and all(f"{SOURCE}:{n}" in chunk.record_ids for n, _ in good)


def test_lines_must_be_consecutive():
    with pytest.raises(ValueError, match="consecutive lines"):
        parse_csv_lines([(2, b"1,2,a\n"), (4, b"2,3,b\n")], COLUMNS, SOURCE, DataConfig())
