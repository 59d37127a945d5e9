"""CSV files -> `RecordChunk`s, sending every unparseable row to a dead letter.

Pure functions (no Beam): the reading DoFn in `pipeline.sources.files` calls them per block
of lines.
Each physical CSV line is one record, parsed on its own, so one bad line (a stray quote, a
wrong field count, bad UTF-8) costs only that line, never the rest of the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from configs.schema import DataConfig
from pipeline.core.records import (
    BAD_UTF8,
    COLUMN_COUNT,
    CSV_QUOTING,
    DeadLetter,
    RawLines,
    RecordChunk,
)
from pipeline.sources.ids import parse_dead_letter, with_ids

STAGE = "parse"
# A line is read whole before it is split, so a field may be as long as its line: the csv
# module's 128 KiB field limit would report a long but well-formed field as a quoting error.
# (2**31 - 1: the largest value every platform's C long accepts.) The limit is process-wide,
# so it is raised where CSV is split, never at import.
_FIELD_LIMIT = 2**31 - 1


def parse_header(line: bytes, source: str, delimiter: str) -> list[str]:
    """Column names from a CSV header line; a bad header is an error (the file is unusable)."""
    try:
        names = next(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")], delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, StopIteration) as err:
        raise ValueError(f"{source}: cannot read the CSV header: {err}") from err
    names = [n.strip() for n in names]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated or not all(names):
        raise ValueError(f"{source}: CSV header has empty or duplicated names: {duplicated}")
    return names


@dataclass(frozen=True)
class LineBlock:
    """Whole physical lines of a CSV file: their bytes (newlines included), the offset just past
    each line, and the 1-based number of the first line."""

    data: bytes
    ends: np.ndarray
    first_number: int

    @classmethod
    def from_lines(cls, lines: Sequence[tuple[int, bytes]]) -> LineBlock:
        """A block of consecutive numbered lines (each with its newline, if it had one)."""
        first = lines[0][0] if lines else 1
        if [n for n, _ in lines] != list(range(first, first + len(lines))):
            raise ValueError("a block holds consecutive lines: their numbers must follow on")
        ends = np.cumsum([len(line) for _, line in lines], dtype=np.int64)
        return cls(b"".join(line for _, line in lines), ends, first)

    def lines(self) -> list[tuple[int, bytes]]:
        starts = [0, *self.ends[:-1].tolist()]
        spans = zip(starts, self.ends.tolist(), strict=True)
        return [(self.first_number + i, self.data[s:e]) for i, (s, e) in enumerate(spans)]


def parse_csv_lines(
    lines: Sequence[tuple[int, bytes]], columns: Sequence[str], source: str, config: DataConfig
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """Parse numbered CSV lines (1-based line numbers) into a chunk plus dead letters."""
    return parse_csv_block(LineBlock.from_lines(lines), columns, source, config)


def parse_csv_block(
    block: LineBlock, columns: Sequence[str], source: str, config: DataConfig
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """Parse a block of CSV lines into a chunk plus dead letters."""
    fast = _parse_clean_block(block, columns, config.csv_delimiter)
    if fast is not None:
        frame, raws, numbers = fast
        return with_ids(frame, raws, numbers, source, config, [])
    rows: list[list[str | None]] = []
    raws: list[str] = []
    numbers: list[int] = []
    dead: list[DeadLetter] = []
    for number, line in block.lines():
        fields, raw, problem = _split_line(line, len(columns), config.csv_delimiter)
        if problem is not None:
            reason, message = problem
            dead.append(parse_dead_letter(f"{source}:{number}", source, reason, message, raw))
        elif fields is not None:
            rows.append(fields)
            raws.append(raw)
            numbers.append(number)
    if not rows:
        return None, dead
    frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
    return with_ids(frame, raws, numbers, source, config, dead)


def _parse_clean_block(
    block: LineBlock, columns: Sequence[str], delimiter: str
) -> tuple[pd.DataFrame, RawLines, np.ndarray] | None:
    """The fast path: the whole block through Arrow's C++ CSV reader, or None to go line by line.

    Only taken for blocks whose every line is plain (no quotes, NUL bytes or carriage returns
    other than a CRLF's), where Arrow and the per-line parser agree exactly; any error (bad
    UTF-8, a wrong field count) or a row count that differs from the non-empty lines falls back
    to the per-line path, which finds and dead-letters the bad lines. Lines are located with
    NumPy and their text is kept as bytes (`RawLines`): no Python work per line.
    """
    data = block.data
    if not data or b'"' in data or b"\x00" in data:
        return None
    starts, ends, crlf = _line_spans(data, block.ends)
    if data.count(b"\r") != crlf:
        return None  # a carriage return inside a line: leave it to the per-line path
    kept = np.flatnonzero(ends > starts)
    if _blank_lines_matter(columns, delimiter) and any(
        not data[starts[i] : ends[i]].strip() for i in kept
    ):
        return None  # whitespace-only lines are skipped, not parsed: the per-line path does
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=list(columns), use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid:  # bad UTF-8 (Arrow checks it), a wrong field count
        return None
    if table.num_rows != len(kept):
        return None
    raws = RawLines(data, starts[kept], ends[kept])
    return table.to_pandas(), raws, block.first_number + kept


def _line_spans(data: bytes, line_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Start and end of each line's text (its newline and a final carriage return excluded),
    and how many lines ended in a carriage return."""
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate([[0], line_ends[:-1]]).astype(np.int64)
    ends = line_ends.astype(np.int64)

    def ends_with(byte: bytes) -> np.ndarray:
        return (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord(byte))

    ends = ends - ends_with(b"\n")
    crs = ends_with(b"\r")
    return starts, ends - crs, int(crs.sum())


def _blank_lines_matter(columns: Sequence[str], delimiter: str) -> bool:
    """Whether Arrow could read a whitespace-only line as a record (the per-line parser skips
    it): with one column, or a whitespace delimiter. Otherwise its field count is wrong."""
    return len(columns) == 1 or delimiter.isspace()


def _split_line(
    line: bytes, width: int, delimiter: str
) -> tuple[list[str | None] | None, str, tuple[str, str] | None]:
    """Fields of one line (None for a blank line), its text, and (reason, message) if bad."""
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
        return None, raw, (BAD_UTF8, f"invalid UTF-8 at byte {err.start}")
    if not text.strip():
        return None, text, None
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    try:
        fields = next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as err:
        return None, text, (CSV_QUOTING, f"CSV quoting error: {err}")
    if len(fields) != width:
        return None, text, (COLUMN_COUNT, f"expected {width} fields, found {len(fields)}")
    return [f if f != "" else None for f in fields], text, None


def read_header(handle, source: str, config: DataConfig) -> list[str]:
    """The column names on the first line of an open CSV file."""
    return parse_header(handle.readline(), source, config.csv_delimiter)


def csv_chunks(path: str, config: DataConfig) -> Iterator:
    """(chunk or None, dead letters) per block of `data.chunk_rows` lines of a CSV file."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        first = 1
        if config.csv_has_header:
            columns = read_header(handle, path, config)
            first = 2
        else:
            columns = list(config.column_names or ())
        for block in line_blocks(handle, config.chunk_rows, first):
            yield parse_csv_block(block, columns, path, config)


def line_blocks(
    handle, size: int, first_number: int = 1, piece_bytes: int = 1 << 20
) -> Iterator[LineBlock]:
    """The rest of a file as blocks of `size` whole lines (the last may be shorter).

    Reads pieces of `piece_bytes` and finds the newlines with NumPy, instead of a `readline`
    call per line (Beam's CompressedFile, for .gz, has `read` too).
    """
    pending, number, eof = b"", first_number, False
    while True:
        newlines = np.flatnonzero(np.frombuffer(pending, dtype=np.uint8) == ord("\n"))
        while len(newlines) < size and not eof:
            piece = handle.read(piece_bytes)
            eof = not piece
            found = np.flatnonzero(np.frombuffer(piece, dtype=np.uint8) == ord("\n"))
            newlines = np.concatenate([newlines, len(pending) + found])
            pending += piece
        ends = newlines[:size] + 1
        if len(newlines) < size and len(pending) > (ends[-1] if len(ends) else 0):
            ends = np.append(ends, len(pending))  # the last line, without a newline
        if not len(ends):
            return
        cut = int(ends[-1])
        yield LineBlock(pending[:cut], ends, number)
        number += len(ends)
        pending = pending[cut:]
