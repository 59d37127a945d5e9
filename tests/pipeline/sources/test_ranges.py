"""Large CSV files read as byte ranges: the same records, ids and dead letters as one reader."""

from __future__ import annotations

import dataclasses
import os

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from configs.schema import ConfigError, DataConfig
from pipeline.core.records import DEAD
from pipeline.sources.csvfile import csv_chunks
from pipeline.sources.files import ReadRecords
from pipeline.sources.ranges import (
    count_range,
    file_is_quoted,
    plan_ranges,
    range_chunks,
    splittable,
)


def _write(tmp_path, text: str, name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


def _table(rows: int = 60) -> str:
    """Numbers and text, CRLF on some lines, a blank line, a row with a wrong field count."""
    lines = ["id,x,c"]
    for i in range(rows):
        line = f"r{i},{i * 1.5},{'abcdefghij'[i % 10] * (1 + i % 7)}"
        lines.append(line + ("\r" if i % 5 == 0 else ""))
        if i == 17:
            lines.append("")
        if i == 30:
            lines.append("bad,row")
    return "\n".join(lines) + "\n"


def _records(chunks) -> tuple[list, list]:
    """(id, values) of every record and (id, reason) of every dead letter, in order."""
    good, bad = [], []
    for chunk, dead in chunks:
        bad += [(d.record_id, d.reason) for d in dead]
        if chunk is not None:
            values = chunk.frame.astype(object).where(chunk.frame.notna(), None).values.tolist()
            good += list(zip(chunk.record_ids, map(tuple, values), strict=True))
    return good, bad


def _by_ranges(path: str, split: int, config: DataConfig) -> tuple[list, list]:
    size = len(open(path, "rb").read())
    pieces = plan_ranges(path, size, split)
    counts = dict(count_range(p, config) for p in pieces)
    assert not file_is_quoted(pieces[0], counts)
    good, bad = [], []
    for piece in pieces:
        g, b = _records(range_chunks(piece, counts, config))
        good, bad = good + g, bad + b
    return good, bad


def test_plan_covers_the_file_in_contiguous_ranges():
    pieces = plan_ranges("f.csv", 1000, 300)
    assert [(p.start, p.end) for p in pieces] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert [p.index for p in pieces] == [0, 1, 2, 3] and {p.count for p in pieces} == {4}
    assert len(plan_ranges("f.csv", 10, 300)) == 1


@pytest.mark.parametrize("split", [7, 31, 64, 200, 5000])
def test_ranges_give_the_records_line_numbers_and_dead_letters_of_one_reader(tmp_path, split):
    config = DataConfig(chunk_rows=8)
    path = _write(tmp_path, _table())
    whole = _records(csv_chunks(path, config))
    assert _by_ranges(path, split, config) == whole
    assert len(whole[0]) == 60 and whole[1] == [(f"{path}:34", "column_count")]


def test_ranges_of_a_headerless_file_and_of_a_file_without_a_final_newline(tmp_path):
    config = DataConfig(csv_has_header=False, column_names=("id", "x", "c"), chunk_rows=5)
    path = _write(tmp_path, _table().split("\n", 1)[1].rstrip("\n"))
    whole = _records(csv_chunks(path, config))
    for split in (9, 50, 123):
        assert _by_ranges(path, split, config) == whole


def test_a_quoted_header_does_not_stop_the_split_but_a_quoted_record_does(tmp_path):
    config = DataConfig()
    header_quoted = _write(tmp_path, '"id","x"\n' + "".join(f"r{i},{i}\n" for i in range(50)))
    pieces = plan_ranges(header_quoted, len(open(header_quoted, "rb").read()), 40)
    counts = dict(count_range(p, config) for p in pieces)
    assert not file_is_quoted(pieces[0], counts)
    assert sum(c.newlines for c in counts.values()) == 51
    record_quoted = _write(tmp_path, 'id,x\nr0,"a\nb"\n' + "r1,1\n" * 40, "q.csv")
    pieces = plan_ranges(record_quoted, len(open(record_quoted, "rb").read()), 40)
    counts = dict(count_range(p, config) for p in pieces)
    assert file_is_quoted(pieces[3], counts)


def test_only_large_utf8_uncompressed_files_are_split():
    config = DataConfig(split_bytes=100)
    assert splittable("a.csv", 101, config)
    assert not splittable("a.csv", 100, config)
    assert not splittable("a.csv.gz", 10_000, config)
    assert not splittable("a.csv", 10_000, dataclasses.replace(config, encoding="utf-16"))
    assert not splittable("a.csv", 10_000, dataclasses.replace(config, split_bytes=0))


@pytest.mark.parametrize("value", [-1, 1.5, True, "64MB"])
def test_split_bytes_must_be_a_whole_number_of_bytes(value):
    with pytest.raises(ConfigError, match="data.split_bytes must be a whole number of bytes"):
        DataConfig(split_bytes=value).validate()


def test_read_records_splits_a_large_file_and_reads_small_and_quoted_ones_whole(tmp_path):
    big = _write(tmp_path, _table(200), "big.csv")
    small = _write(tmp_path, _table(3), "small.csv")
    quoted = _write(tmp_path, 'id,x,c\nq0,"1",a\n' + "".join(f"q{i},{i},b\n" for i in range(1, 90)))
    split = DataConfig(split_bytes=256, chunk_rows=16)
    whole = dataclasses.replace(split, split_bytes=0)
    assert splittable(big, os.path.getsize(big), split) and os.path.getsize(big) > 10 * 256
    assert not splittable(small, os.path.getsize(small), split)
    expected = []
    for path in (big, small, quoted):
        good, _ = _records(csv_chunks(path, whole))
        expected += [record_id for record_id, _ in good]
    pattern = str(tmp_path / "*.csv")
    for config in (split, whole):
        with BeamTestPipeline() as p:
            read = p | ReadRecords(pattern, config)
            ids = read["records"] | "Ids" >> beam.FlatMap(lambda c: c.record_ids)
            dead = read[DEAD] | "DeadIds" >> beam.Map(lambda d: d.record_id)
            assert_that(ids, equal_to(expected), label="CheckIds")
            assert_that(dead, equal_to([f"{big}:34"]), label="CheckDead")
