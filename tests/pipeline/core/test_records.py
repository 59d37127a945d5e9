"""pipeline.core.records: chunks keep ids, raw input and rows aligned; RawLines decodes lazily;
dead letters carry every column of the dead-letter table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.records import (
    COLUMN_KINDS,
    DEAD_LETTER_COLUMNS,
    DeadLetter,
    EncodedChunk,
    RawLines,
    RecordChunk,
    take_raw,
)

LINES = ["a,1", "b,2", "c,3", "d,\u00e9"]


def raw_lines(lines: list[str]) -> RawLines:
    """RawLines over the bytes of `lines` joined by newlines, as the CSV reader builds them."""
    data = "\n".join(lines).encode("utf-8")
    starts, ends, position = [], [], 0
    for line in lines:
        starts.append(position)
        ends.append(position + len(line.encode("utf-8")))
        position = ends[-1] + 1
    return RawLines(data, np.array(starts), np.array(ends))


def chunk(n: int = 4, raw=None) -> RecordChunk:
    frame = pd.DataFrame({"x": [str(i) for i in range(n)], "y": [f"v{i}" for i in range(n)]})
    frame.index = range(10, 10 + n)  # a non-default index: take() must reset it
    return RecordChunk("in.csv", [f"in.csv:{i + 1}" for i in range(n)], raw or LINES[:n], frame)


def test_raw_lines_decode_each_line_and_behave_as_a_sequence():
    raw = raw_lines(LINES)
    assert len(raw) == 4
    assert raw[3] == "d,\u00e9"
    assert list(raw) == LINES
    assert raw == LINES and raw != LINES[:3]


def test_raw_lines_take_keeps_the_selected_lines_in_the_given_order():
    taken = raw_lines(LINES).take(np.array([3, 0]))
    assert isinstance(taken, RawLines)
    assert list(taken) == ["d,\u00e9", "a,1"]


def test_raw_lines_show_undecodable_bytes_escaped_rather_than_failing():
    raw = RawLines(b"ok\n\xff\xfe", np.array([0, 3]), np.array([2, 5]))
    assert raw[1] == "\\xff\\xfe"


def test_take_raw_works_for_lists_and_raw_lines():
    index = np.array([2, 1])
    assert take_raw(LINES, index) == ["c,3", "b,2"]
    assert list(take_raw(raw_lines(LINES), index)) == ["c,3", "b,2"]


@pytest.mark.parametrize("raw", [None, raw_lines(LINES)], ids=["list", "RawLines"])
def test_take_with_a_boolean_mask_keeps_ids_raw_and_rows_aligned(raw):
    whole = chunk(raw=raw)
    part = whole.take(np.array([True, False, True, False]))
    assert len(part) == 2 and part.source == "in.csv"
    assert part.record_ids == ["in.csv:1", "in.csv:3"]
    assert list(part.raw) == ["a,1", "c,3"]
    assert part.frame["y"].tolist() == ["v0", "v2"]
    assert part.frame.index.tolist() == [0, 1]


def test_take_with_integer_positions_follows_their_order():
    part = chunk().take(np.array([3, 1]))
    assert part.record_ids == ["in.csv:4", "in.csv:2"]
    assert list(part.raw) == ["d,\u00e9", "b,2"]
    assert part.frame["x"].tolist() == ["3", "1"]


def test_take_of_nothing_is_an_empty_chunk():
    part = chunk().take(np.zeros(4, dtype=bool))
    assert len(part) == 0 and part.record_ids == [] and len(part.frame) == 0


def test_dead_letters_name_each_row_with_its_raw_input_and_the_field():
    letters = chunk().dead_letters(
        np.array([0, 2]), "parse", "not_a_number", "x is not a number", field="x"
    )
    assert [d.record_id for d in letters] == ["in.csv:1", "in.csv:3"]
    assert [d.raw for d in letters] == ["a,1", "c,3"]
    assert {(d.source, d.stage, d.reason, d.message, d.field) for d in letters} == {
        ("in.csv", "parse", "not_a_number", "x is not a number", "x")
    }


def test_dead_letter_row_has_exactly_the_dead_letter_columns():
    letter = DeadLetter("r1", "in.csv", "parse", "column_count", "3 values, 2 columns", "a,b,c")
    row = letter.as_row()
    assert tuple(row) == DEAD_LETTER_COLUMNS
    assert row["field"] is None and row["raw"] == "a,b,c" and row["reason"] == "column_count"


def test_encoded_chunk_length_and_default_passthrough():
    encoded = EncodedChunk("in.csv", ["a", "b"], ["1", "2"], np.zeros((2, 6), np.float32))
    assert len(encoded) == 2
    assert encoded.passthrough.empty


def test_column_kinds_are_distinct():
    assert len(set(COLUMN_KINDS)) == len(COLUMN_KINDS) == 3


def test_json_rows_write_each_row_as_the_records_json_only_when_asked():
    import json

    from pipeline.core.records import JsonRows, take_raw

    frame = pd.DataFrame({"id": [7, 8, 9], "x": [1.5, None, 3.0], "c": ["a", None, "c"]})
    values = frame.astype(object).where(frame.notna(), None)
    expected = [json.dumps(row, default=str) for row in values.to_dict(orient="records")]
    rows = JsonRows(values)
    assert len(rows) == 3 and list(rows) == expected and rows == expected
    assert json.loads(rows[0]) == {"id": 7, "x": 1.5, "c": "a"}  # numbers stay numbers
    assert list(rows[1:]) == expected[1:]
    assert list(take_raw(rows, np.array([2, 0]))) == [expected[2], expected[0]]
