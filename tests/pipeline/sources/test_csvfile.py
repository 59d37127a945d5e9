"""Parsing raw CSV lines, Arrow batches and tf.Examples into chunks plus dead letters."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from configs.schema import ConfigError, DataConfig
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
from pipeline.sources.csvfile import (
    Utf8Stream,
    parse_csv_block,
    parse_csv_lines,
    parse_header,
    record_blocks,
    text_stream,
)

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


# ------------------------------------------------------------- multi-line quoted records


def records_of(data: bytes, config: DataConfig = DataConfig(), **kwargs):
    """Chunks and dead letters of a whole file body (after a header on line 1), read in tiny
    pieces so that records cross piece boundaries."""
    stream = text_stream(io.BytesIO(data), config)
    blocks = record_blocks(stream, 2, len(COLUMNS), config.csv_delimiter, 2, 5, **kwargs)
    chunks, dead = [], []
    for block in blocks:
        chunk, letters = parse_csv_block(block, COLUMNS, SOURCE, config)
        chunks += [chunk] if chunk is not None else []
        dead += letters
    ids = [i for c in chunks for i in c.record_ids]
    rows = [r for c in chunks for r in c.frame.to_dict("records")]
    raws = [r for c in chunks for r in c.raw]
    return ids, rows, raws, dead


def test_a_newline_inside_quotes_does_not_end_the_record():
    data = b'1,2,"first\nsecond"\n2,3,"a ""q""\r\nb"\r\n3,4,c\n4,"x\n\ny",d'
    ids, rows, raws, dead = records_of(data)
    assert dead == []
    # Ids name each record's first line: records on lines 2-3, 4-5, 6 and 7-9.
    assert ids == [f"{SOURCE}:2", f"{SOURCE}:4", f"{SOURCE}:6", f"{SOURCE}:7"]
    assert [r["c"] for r in rows] == ["first\nsecond", 'a "q"\r\nb', "c", "d"]
    assert rows[3]["x"] == "x\n\ny"
    assert raws[0] == '1,2,"first\nsecond"' and raws[3] == '4,"x\n\ny",d'


def test_multi_line_records_are_the_same_whatever_the_piece_and_block_size():
    data = b"".join(
        (f'{i},{i},"v{i}\nmore ""{i}""\nend"\n' if i % 3 == 0 else f"{i},{i},v{i}\n").encode()
        for i in range(30)
    )
    expected = None
    for piece in (1, 3, 64, 1 << 20):
        for size in (1, 4, 100):
            blocks = list(record_blocks(io.BytesIO(data), size, 3, ",", 2, piece))
            got = [(n, r) for b in blocks for n, r in b.records()]
            assert all(len(b.ends) == size for b in blocks[:-1])
            expected = expected or got
            assert got == expected
    assert len(expected) == 30 and b"".join(r for _, r in expected) == data
    assert [n for n, _ in expected][:4] == [2, 5, 6, 7]  # record 0 spans lines 2-4


def test_an_unclosed_quote_dead_letters_its_line_only_and_reading_goes_on():
    # Line 3's quote never closes: line 3 alone is the bad record, lines 4-5 are records.
    data = b'1,2,a\n2,"oops,b\n3,4,c\n4,5,d\n'
    ids, rows, _, dead = records_of(data)
    assert ids == [f"{SOURCE}:2", f"{SOURCE}:4", f"{SOURCE}:5"]
    [letter] = dead
    assert (letter.record_id, letter.reason, letter.raw) == (
        f"{SOURCE}:3",
        CSV_QUOTING,
        '2,"oops,b',
    )
    assert letter.message.startswith("CSV quoting error: a quoted field is not closed")


def test_two_unclosed_quotes_do_not_join_the_lines_between_them():
    """The second quote would close the first, but the joined lines are no good record
    (text after the closing quote): each opening line is its own quoting error."""
    data = b'1,"abc,x\n2,3,y\n3,"def,z\n4,5,w\n'
    ids, _, _, dead = records_of(data)
    assert ids == [f"{SOURCE}:3", f"{SOURCE}:5"]
    assert [(d.record_id, d.reason) for d in dead] == [
        (f"{SOURCE}:2", CSV_QUOTING),
        (f"{SOURCE}:4", CSV_QUOTING),
    ]


def test_joined_lines_with_the_wrong_field_count_are_not_one_record():
    data = b'1,"a\nb",c,d,e\n2,3,d\n'
    ids, _, _, dead = records_of(data)
    # Line 2 opens a quote that line 3 closes, but into 5 fields: line 2 is the bad record, and
    # line 3 is read on its own (its quote, inside an unquoted field, is text): 4 fields.
    assert [(d.record_id, d.reason, d.raw) for d in dead] == [
        (f"{SOURCE}:2", CSV_QUOTING, '1,"a'),
        (f"{SOURCE}:3", COLUMN_COUNT, 'b",c,d,e'),
    ]
    assert ids == [f"{SOURCE}:4"]


def test_a_stray_quote_inside_an_unquoted_field_is_text():
    ids, rows, _, dead = records_of(b"1,5'10\",a\n2,3,b\n")
    assert dead == [] and ids == [f"{SOURCE}:2", f"{SOURCE}:3"]
    assert rows[0]["x"] == "5'10\""


@pytest.mark.parametrize("bounds", [(3, 1 << 20), (100, 10)])
def test_a_quoted_field_past_the_bound_is_a_quoting_error_of_its_opening_line(bounds):
    """With at most 3 lines (or 10 bytes) per record, a field over 4 lines (14 bytes) is given
    up: its opening line is dead-lettered, the following lines are read as records of their own."""
    data = b'1,2,"a\nb\nc\nd"\n5,6,e\n'
    ids, _, _, dead = records_of(data, bounds=bounds)
    assert [(d.record_id, d.reason) for d in dead][0] == (f"{SOURCE}:2", CSV_QUOTING)
    assert f"{SOURCE}:6" in ids
    assert len(ids) + len(dead) == 5  # every line is a record or a dead letter
    ids, rows, _, dead = records_of(data)  # within the default bounds: one good record
    assert dead == [] and ids == [f"{SOURCE}:2", f"{SOURCE}:6"]
    assert rows[0]["c"] == "a\nb\nc\nd"


def test_an_unclosed_quote_waits_for_more_data_only_up_to_the_bound():
    """An unclosed quote on line 2 followed by many quote-free lines: reading goes on in blocks,
    without holding more than the bound of lines back."""
    data = b'1,"x,a\n' + b"".join(f"{i},{i},v\n".encode() for i in range(2, 50))
    blocks = record_blocks(io.BytesIO(data), 4, 3, ",", 2, 16, bounds=(10, 1 << 20))
    counts = [len(b.ends) for b in blocks]
    assert sum(counts) == 49 and set(counts[:-1]) == {4}


# --------------------------------------------------------------------------- encodings


def test_cp1252_text_reads_with_its_encoding_and_is_bad_utf8_without():
    data = "1,2,café\n2,3,naïve\n".encode("cp1252")
    ids, rows, raws, dead = records_of(
        data,
        DataConfig(encoding="cp1252"),
    )
    assert ids == [f"{SOURCE}:2", f"{SOURCE}:3"] and dead == []
    assert [r["c"] for r in rows] == ["café", "naïve"] and raws == ["1,2,café", "2,3,naïve"]
    _, _, _, dead = records_of(data)  # read as UTF-8 (the default)
    assert [d.reason for d in dead] == [BAD_UTF8, BAD_UTF8]
    assert dead[0].raw == "1,2,caf\\xe9"


def test_bytes_the_encoding_cannot_decode_are_a_dead_letter_naming_the_byte():
    # 0x81 is undefined in cp1252; 0x10 is a control byte that cp1252 decodes.
    data = b"1,2,caf\xe9\n2,3,x\x81y\n3,4,z\n"
    ids, _, _, dead = records_of(data, DataConfig(encoding="cp1252"))
    assert ids == [f"{SOURCE}:2", f"{SOURCE}:4"]
    [letter] = dead
    assert (letter.record_id, letter.reason, letter.raw) == (f"{SOURCE}:3", BAD_UTF8, "2,3,x\\x81y")
    assert letter.message == "byte 0x81 at character 5 is not valid cp1252"


def test_utf16_with_bom_and_multi_line_fields():
    """Newlines are two bytes in UTF-16: records are found after conversion to UTF-8."""
    text = 'id,x,c\r\n1,2,"é\r\nè"\r\n2,3,ü\r\n'
    stream = Utf8Stream(io.BytesIO(text.encode("utf-16")), "utf-16", piece_bytes=3)
    assert parse_header(stream.readline(), SOURCE, ",") == COLUMNS
    config = DataConfig(encoding="utf-16")
    [block] = record_blocks(stream, 10, 3, ",", 2, 4)
    chunk, dead = parse_csv_block(block, COLUMNS, SOURCE, config)
    assert dead == [] and chunk.record_ids == [f"{SOURCE}:2", f"{SOURCE}:4"]
    assert chunk.frame["c"].tolist() == ["é\r\nè", "ü"]


def test_header_in_another_encoding():
    stream = Utf8Stream(io.BytesIO("prénom;âge\n".encode("latin-1")), "latin-1")
    assert parse_header(stream.readline(), SOURCE, ";") == ["prénom", "âge"]
    stream = Utf8Stream(io.BytesIO(b"id;\x81\n"), "cp1252")
    with pytest.raises(ValueError, match="cannot read the CSV header as cp1252"):
        parse_header(stream.readline(), SOURCE, ";", "cp1252")


@pytest.mark.parametrize("name", ["utf-8", "UTF8", "cp1252", "latin-1", "utf-16", "shift_jis"])
def test_encoding_accepts_python_codec_names(name):
    DataConfig(encoding=name).validate()


@pytest.mark.parametrize("name", ["klingon", "base64", ""])
def test_unknown_or_non_text_encoding_is_a_config_error_naming_the_key(name):
    with pytest.raises(
        ConfigError, match=r"data\.encoding must be the name of a Python text codec"
    ):
        DataConfig(encoding=name).validate()
