"""Reading input files (CSV, Parquet, TFRecord) into chunks and dead letters; writing outputs."""

from __future__ import annotations

import gzip
import io
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from configs.schema import DataConfig
from pipeline.core.fs import read_text, write_json, write_text
from pipeline.core.records import (
    COLUMN_COUNT,
    DEAD,
    DEAD_LETTER_COLUMNS,
    MISSING_ID,
    UNREADABLE_FILE,
    DeadLetter,
)
from pipeline.jobs.runner import counters
from pipeline.sinks.parquet import WriteDeadLetters, WriteTables
from pipeline.sources.csvfile import record_blocks
from pipeline.sources.files import ReadRecords, input_columns, input_format, match_inputs


# Matchers and mapping functions are module-level: Beam pickles them.
def _rows(chunk) -> list[tuple]:
    """One comparable tuple per record: (record_id, raw, sorted column items)."""
    return [
        (rid, raw, tuple(sorted(row.items())))
        for rid, raw, row in zip(
            chunk.record_ids, chunk.raw, chunk.frame.to_dict("records"), strict=True
        )
    ]


def _ids(chunk) -> list[str]:
    return chunk.record_ids


def _size(chunk) -> tuple[str, int]:
    return chunk.source, len(chunk)


def _reason(letter: DeadLetter) -> tuple[str, str]:
    return letter.source, letter.reason


def _run(pipeline) -> dict[str, int]:
    result = pipeline.run()
    result.wait_until_finish()
    return counters(result)


def _write_csv(path, text: str):
    path.write_text(text)
    return str(path)


def _example(x: float, c: bytes) -> bytes:
    features = {
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
        "c": tf.train.Feature(bytes_list=tf.train.BytesList(value=[c])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


# ---------------------------------------------------------------------- driver-side helpers


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("a.txt", "csv"),
        ("a.csv.gz", "csv"),
        ("gs://b/a.parquet", "parquet"),
        ("a.tfrecord", "tfrecord"),
    ],
)
def test_input_format_from_extension(path, fmt):
    assert input_format(path, DataConfig()) == fmt


def test_configured_format_wins_and_unknown_extension_is_an_error():
    assert input_format("a.dat", DataConfig(format="parquet")) == "parquet"
    with pytest.raises(ValueError, match="cannot tell the format of a.dat"):
        input_format("a.dat", DataConfig())


def test_match_inputs(tmp_path):
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / name).write_text("x\n")
    assert match_inputs(str(tmp_path / "*.csv")) == [
        str(tmp_path / "a.csv"),
        str(tmp_path / "b.csv"),
    ]
    with pytest.raises(FileNotFoundError, match="no input files match"):
        match_inputs(str(tmp_path / "*.parquet"))


def test_input_columns(tmp_path):
    csv_path = _write_csv(tmp_path / "a.csv", "id, x,c\n1,2,3\n")
    assert input_columns(csv_path, DataConfig()) == ["id", "x", "c"]
    headerless = DataConfig(csv_has_header=False, column_names=("p", "q"))
    assert input_columns(csv_path, headerless) == ["p", "q"]
    pq.write_table(pa.table({"k": [1], "v": ["a"]}), tmp_path / "a.parquet")
    assert input_columns(str(tmp_path / "a.parquet"), DataConfig()) == ["k", "v"]
    assert input_columns(str(tmp_path / "a.tfrecord"), DataConfig()) == []


# ---------------------------------------------------------------------------- ReadRecords


def test_read_csv_with_header_in_chunks(tmp_path):
    path = _write_csv(tmp_path / "a.csv", "id,x,c\n1,1.5,a\n2,,b\n3,2\n4,3,c\n\n5,4,d\n6,5,e\n")
    p = BeamTestPipeline()
    read = p | ReadRecords(path, DataConfig(chunk_rows=3))
    assert_that(
        read.records | beam.FlatMap(_rows),
        equal_to(
            [
                (f"{path}:2", "1,1.5,a", (("c", "a"), ("id", "1"), ("x", "1.5"))),
                (f"{path}:3", "2,,b", (("c", "b"), ("id", "2"), ("x", None))),
                (f"{path}:5", "4,3,c", (("c", "c"), ("id", "4"), ("x", "3"))),
                (f"{path}:7", "5,4,d", (("c", "d"), ("id", "5"), ("x", "4"))),
                (f"{path}:8", "6,5,e", (("c", "e"), ("id", "6"), ("x", "5"))),
            ]
        ),
        label="records",
    )
    # Lines 2-4, 5-7 and 8: three chunks; the bad line and the blank line leave their chunk.
    assert_that(
        read.records | beam.Map(_size), equal_to([(path, 2), (path, 2), (path, 1)]), label="sizes"
    )
    assert_that(
        read[DEAD],
        equal_to(
            [
                DeadLetter(
                    f"{path}:4", path, "parse", COLUMN_COUNT, "expected 3 fields, found 2", "3,2"
                )
            ]
        ),
        label="dead",
    )
    metrics = _run(p)
    # Rows read = rows in chunks + dead letters (the blank line is no record).
    assert metrics["rows_read"] == 5 + 1
    assert metrics["rows_dead_lettered"] == 1


def test_read_headerless_csv_with_column_names(tmp_path):
    path = _write_csv(tmp_path / "h.csv", "r1;1\nr2;2\n")
    config = DataConfig(
        csv_has_header=False, column_names=("id", "x"), csv_delimiter=";", id_column="id"
    )
    with BeamTestPipeline() as p:
        read = p | ReadRecords(path, config)
        assert_that(
            read.records | beam.FlatMap(_rows),
            equal_to([("r1", "r1;1", (("x", "1"),)), ("r2", "r2;2", (("x", "2"),))]),
            label="records",
        )
        assert_that(read[DEAD], equal_to([]), label="dead")


def test_read_headerless_csv_derives_ids_from_line_one(tmp_path):
    path = _write_csv(tmp_path / "h.csv", "1,2\n3,4\n")
    config = DataConfig(csv_has_header=False, column_names=("a", "b"))
    with BeamTestPipeline() as p:
        ids = (p | ReadRecords(path, config)).records | beam.FlatMap(_ids)
        assert_that(ids, equal_to([f"{path}:1", f"{path}:2"]))


def test_read_gzipped_csv(tmp_path):
    path = tmp_path / "z.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("id,x\n1,2\n3\n")
    p = BeamTestPipeline()
    read = p | ReadRecords(str(path), DataConfig())
    assert_that(
        read.records | beam.FlatMap(_rows),
        equal_to([(f"{path}:2", "1,2", (("id", "1"), ("x", "2")))]),
        label="records",
    )
    assert_that(read[DEAD] | beam.Map(_reason), equal_to([(str(path), COLUMN_COUNT)]), label="dead")
    assert _run(p)["rows_read"] == 2


def _value_c(chunk) -> list[tuple[str, str]]:
    return [(rid, c) for rid, c in zip(chunk.record_ids, chunk.frame["c"], strict=True)]


def test_multi_line_quoted_fields_are_one_record_each_and_rows_read_counts_records(tmp_path):
    """500 records, 10 of them with a newline inside a quoted field (510 physical lines)."""
    lines, expected, number = ["id,x,c\n"], [], 2
    for i in range(500):
        value = f"note {i}\nsecond line, with a comma" if i % 50 == 7 else f"v{i}"
        lines.append(f'{i},{i * 0.5},"{value}"\n' if "\n" in value else f"{i},{i * 0.5},{value}\n")
        expected.append((f"{i}", value))
        number += 1 + value.count("\n")
    path = _write_csv(tmp_path / "m.csv", "".join(lines))
    assert "".join(lines).count("\n") == 511  # the header, 500 records, 10 inner newlines
    p = BeamTestPipeline()
    read = p | ReadRecords(path, DataConfig(id_column="id", chunk_rows=64))
    assert_that(read.records | beam.FlatMap(_value_c), equal_to(expected), label="records")
    assert_that(read[DEAD], equal_to([]), label="dead")
    metrics = _run(p)
    assert metrics["rows_read"] == 500
    assert metrics.get("rows_dead_lettered", 0) == 0


def test_multi_line_record_ids_name_the_first_line(tmp_path):
    path = _write_csv(tmp_path / "m.csv", 'x,c\n1,"a\nb"\n2,"c\n\nd"\n3,e\n')
    with BeamTestPipeline() as p:
        ids = (p | ReadRecords(path, DataConfig())).records | beam.FlatMap(_ids)
        assert_that(ids, equal_to([f"{path}:2", f"{path}:4", f"{path}:7"]))


def _cp1252_file(tmp_path) -> str:
    path = tmp_path / "w.csv"
    path.write_bytes("id,prénom,c\n1,José,café\n2,Zoë,thé\n".encode("cp1252"))
    return str(path)


def test_cp1252_file_reads_with_data_encoding(tmp_path):
    path = _cp1252_file(tmp_path)
    config = DataConfig(encoding="cp1252")
    assert input_columns(path, config) == ["id", "prénom", "c"]
    p = BeamTestPipeline()
    read = p | ReadRecords(path, config)
    assert_that(
        read.records | beam.FlatMap(_rows),
        equal_to(
            [
                (f"{path}:2", "1,José,café", (("c", "café"), ("id", "1"), ("prénom", "José"))),
                (f"{path}:3", "2,Zoë,thé", (("c", "thé"), ("id", "2"), ("prénom", "Zoë"))),
            ]
        ),
        label="records",
    )
    assert_that(read[DEAD], equal_to([]), label="dead")
    assert _run(p)["rows_read"] == 2


def test_cp1252_file_read_as_utf8_is_an_unreadable_header(tmp_path):
    """Without data.encoding the header itself is not UTF-8: one dead letter naming the file."""
    path = _cp1252_file(tmp_path)
    with pytest.raises(ValueError, match="cannot read the CSV header as utf-8"):
        input_columns(path, DataConfig())


def test_cp1252_rows_read_as_utf8_are_bad_utf8_dead_letters(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes("id,c\n1,café\n2,tea\n".encode("cp1252"))
    p = BeamTestPipeline()
    read = p | ReadRecords(str(path), DataConfig())
    assert_that(read.records | beam.FlatMap(_ids), equal_to([f"{path}:3"]), label="ids")
    assert_that(read[DEAD] | beam.Map(_reason), equal_to([(str(path), "bad_utf8")]), label="dead")
    assert _run(p)["rows_read"] == 2


def test_utf8_bom_is_still_skipped_on_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,c\n1,é\n".encode())
    assert input_columns(str(path), DataConfig()) == ["id", "c"]
    assert input_columns(str(path), DataConfig(encoding="utf-8-sig")) == ["id", "c"]


def test_read_parquet(tmp_path):
    path = str(tmp_path / "t.parquet")
    table = pa.table({"id": [10, None, 12], "x": [1.5, 2.5, None], "c": ["a", "b", None]})
    pq.write_table(table, path, row_group_size=2)
    p = BeamTestPipeline()
    read = p | ReadRecords(path, DataConfig(id_column="id", chunk_rows=2))
    assert_that(
        read.records | beam.FlatMap(_rows),
        equal_to(
            [
                ("10", json.dumps({"id": 10, "x": 1.5, "c": "a"}), (("c", "a"), ("x", 1.5))),
                ("12", json.dumps({"id": 12, "x": None, "c": None}), (("c", None), ("x", None))),
            ]
        ),
        label="records",
    )
    assert_that(
        read[DEAD],
        equal_to(
            [
                DeadLetter(
                    f"{path}:2",
                    path,
                    "parse",
                    MISSING_ID,
                    "record has no value in id column 'id'",
                    json.dumps({"id": None, "x": 2.5, "c": "b"}),
                )
            ]
        ),
        label="dead",
    )
    metrics = _run(p)
    assert metrics["rows_read"] == 3 and metrics["rows_dead_lettered"] == 1


def test_read_tfrecord_of_examples(tmp_path):
    path = str(tmp_path / "t.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(_example(0.5, b"a"))
        writer.write(b"\x00garbage")
        writer.write(_example(1.5, b"b"))
    p = BeamTestPipeline()
    read = p | ReadRecords(path, DataConfig())
    assert_that(
        read.records | beam.FlatMap(_rows),
        equal_to(
            [
                (f"{path}:1", json.dumps({"c": "a", "x": 0.5}), (("c", "a"), ("x", 0.5))),
                (f"{path}:3", json.dumps({"c": "b", "x": 1.5}), (("c", "b"), ("x", 1.5))),
            ]
        ),
        label="records",
    )
    assert_that(read[DEAD] | beam.Map(_reason), equal_to([(path, "bad_example")]), label="dead")
    assert _run(p)["rows_read"] == 3


def test_glob_reads_every_matching_file(tmp_path):
    a = _write_csv(tmp_path / "part-0.csv", "x,c\n1,a\n2,b\n")
    b = _write_csv(tmp_path / "part-1.csv", "x,c\n3,c\n")
    _write_csv(tmp_path / "other.csv", "x,c\n9,z\n")
    p = BeamTestPipeline()
    read = p | ReadRecords(str(tmp_path / "part-*.csv"), DataConfig())
    assert_that(
        read.records | beam.FlatMap(_ids),
        equal_to([f"{a}:2", f"{a}:3", f"{b}:2"]),
        label="ids",
    )
    assert_that(read[DEAD], equal_to([]), label="dead")
    metrics = _run(p)
    assert metrics["rows_read"] == 3
    assert metrics.get("rows_dead_lettered", 0) == 0


def test_bad_header_is_one_unreadable_file_dead_letter_other_files_still_read(tmp_path):
    good = _write_csv(tmp_path / "a.csv", "x,c\n1,a\n2,b\n")
    bad = _write_csv(tmp_path / "b.csv", "x,x\n1,a\n2,b\n3,c\n")
    p = BeamTestPipeline()
    read = p | ReadRecords(str(tmp_path / "*.csv"), DataConfig())
    assert_that(
        read.records | beam.FlatMap(_ids),
        equal_to([f"{good}:2", f"{good}:3"]),
        label="ids",
    )
    assert_that(
        read[DEAD],
        equal_to(
            [
                DeadLetter(
                    bad,
                    bad,
                    "read",
                    UNREADABLE_FILE,
                    f"{bad}: CSV header has empty or duplicated names: ['x']",
                    "",
                )
            ]
        ),
        label="dead",
    )
    metrics = _run(p)
    # The unreadable file counts as one record read and one dead letter.
    assert metrics["rows_read"] == 2 + 1
    assert metrics["rows_dead_lettered"] == 1


def test_corrupt_parquet_is_an_unreadable_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with BeamTestPipeline() as p:
        read = p | ReadRecords(str(path), DataConfig())
        assert_that(read.records, equal_to([]), label="records")
        assert_that(read[DEAD] | beam.Map(_reason), equal_to([(str(path), UNREADABLE_FILE)]))


# ------------------------------------------------------------------------------ writing


def test_write_dead_letters_and_tables_as_parquet(tmp_path):
    letters = [
        DeadLetter("r1", "s", "parse", COLUMN_COUNT, "m1", "raw1"),
        DeadLetter("r2", "s", "type", "not_a_number", "m2", "raw2", field="x"),
    ]
    schema = pa.schema([("record_id", pa.string()), ("score", pa.float64())])
    tables = [
        pa.Table.from_pydict({"record_id": ["a", "b"], "score": [1.0, 2.0]}, schema=schema),
        pa.Table.from_pydict({"record_id": ["c"], "score": [3.0]}, schema=schema),
    ]
    with BeamTestPipeline() as p:
        _ = p | "Letters" >> beam.Create(letters) | WriteDeadLetters(str(tmp_path / "dead"))
        _ = p | "Tables" >> beam.Create(tables) | WriteTables(str(tmp_path / "flags"), schema)

    dead = pq.read_table(tmp_path / "dead").to_pylist()
    assert sorted(dead, key=lambda r: r["record_id"]) == [d.as_row() for d in letters]
    assert pq.read_schema(next((tmp_path / "dead").glob("*.parquet"))).names == list(
        DEAD_LETTER_COLUMNS
    )
    flags = pq.read_table(tmp_path / "flags").to_pylist()
    assert sorted(r["record_id"] for r in flags) == ["a", "b", "c"]


def test_write_dead_letters_writes_a_file_even_when_empty(tmp_path):
    with BeamTestPipeline() as p:
        _ = p | beam.Create([]) | WriteDeadLetters(str(tmp_path / "dead"))
    files = list((tmp_path / "dead").glob("*.parquet"))
    assert len(files) == 1
    assert pq.read_table(files[0]).num_rows == 0


def test_small_file_helpers_round_trip(tmp_path):
    write_text(str(tmp_path / "a.txt"), "héllo\n")
    assert read_text(str(tmp_path / "a.txt")) == "héllo\n"
    write_json(str(tmp_path / "a.json"), {"k": [1, 2], "p": tmp_path})
    assert json.loads(read_text(str(tmp_path / "a.json"))) == {"k": [1, 2], "p": str(tmp_path)}


@pytest.mark.parametrize("piece_bytes", [1, 7, 1 << 20])
@pytest.mark.parametrize("tail", [b"", b"\n", b"\r\n"])
def test_record_blocks_cut_whole_lines_in_blocks_whatever_the_read_size(piece_bytes, tail):
    lines = [b"a,1\n", b"\n", b"bb,22\r\n", b"ccc,333\n", b"d,4" + tail]
    handle = io.BytesIO(b"".join(lines))
    blocks = list(record_blocks(handle, size=2, width=2, first_number=2, piece_bytes=piece_bytes))
    assert [b.numbers.tolist() for b in blocks] == [[2, 3], [4, 5], [6]]
    assert [line for b in blocks for _, line in b.records()] == lines


def test_record_blocks_of_an_empty_file():
    assert list(record_blocks(io.BytesIO(b""), size=4, width=2)) == []
