"""A typed chunk <-> one archive block: a dictionary the block is primed with (fewer bits,
the bound kept, another dictionary does not decode it), integer categories, the output types and
bits per record."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from configs.schema import CompressConfig
from pipeline.archive import format as fmt
from pipeline.archive.blocks import (
    NOT_AN_INTEGER,
    Archiver,
    bits_per_record,
    output_schema,
)
from pipeline.archive.verify import violations
from pipeline.core.records import RecordChunk

ONE_PERCENT = CompressConfig(relative_tolerance=0.01)


def chunk(frame: pd.DataFrame) -> RecordChunk:
    return RecordChunk("t.csv", [f"t.csv:{i + 2}" for i in range(len(frame))], [""] * len(frame),
                       frame.reset_index(drop=True))  # fmt: skip


def test_a_dictionary_primes_the_block_and_keeps_the_bound(tiny_model, encoding, frame_of):
    block, dictionary = frame_of(400, 21), frame_of(3000, 22)
    plain = Archiver(tiny_model, encoding, ONE_PERCENT).compress_chunk(chunk(block), 0).row
    primed_archiver = Archiver(tiny_model, encoding, ONE_PERCENT, dictionary=dictionary)
    primed = primed_archiver.compress_chunk(chunk(block), 0).row
    assert len(primed["payload"]) < len(plain["payload"])
    decoded, _ = primed_archiver.decompress_payload(primed["payload"])
    ids = [f"r{i}" for i in range(len(block))]
    assert violations(block, decoded, encoding, ONE_PERCENT, ids) == []
    other = Archiver(tiny_model, encoding, ONE_PERCENT, dictionary=frame_of(3000, 23))
    with pytest.raises(ValueError):  # another dictionary: other probabilities, other values
        other.decompress_payload(primed["payload"])


def test_an_integer_category_that_is_no_integer_is_a_dead_letter(tiny_model, encoding, frame_of):
    frame = frame_of(50, 6)
    frame.loc[3, "level"] = "2.5"
    result = Archiver(tiny_model, encoding, ONE_PERCENT).compress_chunk(chunk(frame), 0)
    assert [d.reason for d in result.dead] == [NOT_AN_INTEGER]
    assert result.row["rows"] == 49


def test_output_types_follow_the_archive_info(encoding):
    info = {"columns": ["amount", "rate", "wild", "count", "city", "level"],
            "integer_columns": [3]}  # fmt: skip
    types = output_schema(info, encoding)
    assert types["count"] == pa.int64() and types["amount"] == pa.float64()
    assert types["level"] == pa.int64() and types["city"] == pa.string()
    assert fmt.integer_columns(info) == {"count"}


def test_bits_per_record_add_up():
    bits = {"code": 80, "masks": 0, "numbers": 160, "categories": 40, "header": 16, "side": 24}
    per = bits_per_record(bits, 8)
    assert per["code"] == 10 and per["total"] == 40 and per["bytes_per_record"] == 5
    assert bits_per_record(bits, 0)["total"] == 0
