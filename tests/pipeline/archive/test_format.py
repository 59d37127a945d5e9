"""A block's bytes: parts round-trip, damage is named, side data is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.archive import format as fmt
from pipeline.core.errors import BundleError


def test_parts_round_trip():
    words = np.array([1, 2, 0xFFFFFFFF], dtype=np.uint32)
    header, side, back = fmt.unpack(fmt.pack(b"head", b"side", words))
    assert (header, side) == (b"head", b"side") and np.array_equal(back, words)


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"NOPE" + bytes(20), "bad magic"),
        (fmt.MAGIC + (100).to_bytes(4, "little") + b"x", "truncated"),
        (fmt.pack(b"h", b"s", np.array([7], np.uint32))[:-1], "whole 32-bit words"),
    ],
)
def test_damaged_payloads_are_named(payload, message):
    with pytest.raises(ValueError, match=message):
        fmt.unpack(payload)


def test_side_columns_are_kept_exactly():
    frame = pd.DataFrame({"id": ["a", "é", None], "n": [1, 2, 3]})
    table = fmt.side_table(fmt.side_bytes(frame))
    assert table.to_pydict() == {"id": ["a", "é", None], "n": [1, 2, 3]}
    assert fmt.side_bytes(pd.DataFrame(index=range(3))) == b""


def test_an_archive_without_summary_is_incomplete(tmp_path):
    (tmp_path / "archive.json").write_text("{}")
    with pytest.raises(BundleError, match="summary.json is missing"):
        fmt.read_archive_info(str(tmp_path))


def test_a_foreign_format_is_refused(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "archive.json").write_text('{"format": "vaepipe-archive", "format_version": 9}')
    with pytest.raises(BundleError, match="version 9"):
        fmt.read_archive_info(str(tmp_path))
