"""CSV files -> `RecordChunk`s, sending every unparseable record to a dead letter.

Pure functions (no Beam): the reading DoFn in `pipeline.sources.files` calls them per block
of records.

A record is an RFC 4180 CSV record: one physical line, or several when a quoted field holds a
newline ("" inside quotes is an escaped quote). Each record is parsed on its own, so one bad
record (a stray quote, a wrong field count, bad text) costs only that record, never the rest of
the file. Its id is `<file>:<number of its first line>`.

A quote that is never closed must not swallow the rest of the file, so a record continues past
a line end only if (1) a quoted field is open there (quote parity), (2) the quote closes within
`MAX_RECORD_LINES` lines and `MAX_RECORD_BYTES` bytes, and (3) the joined lines parse as one
well-formed record with the header's field count. Otherwise the opening line alone is the
record (dead-lettered as `csv_quoting`) and reading goes on with the next line.

Text is UTF-8 unless `data.encoding` names another codec: such files are converted to UTF-8 as
they are read (bytes the codec cannot decode are kept as markers, so their record is
dead-lettered as `bad_utf8` naming the byte), and everything after works on UTF-8 bytes.
"""

from __future__ import annotations

import codecs
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
# A record is read whole before it is split, so a field may be as long as its record: the csv
# module's 128 KiB field limit would report a long but well-formed field as a quoting error.
# (2**31 - 1: the largest value every platform's C long accepts.) The limit is process-wide,
# so it is raised where CSV is split, never at import.
_FIELD_LIMIT = 2**31 - 1
# How far a quoted field may carry a record over line ends. Real multi-line values (addresses,
# comments) span a few lines; the bound keeps an unclosed quote from holding up to this much of
# the file in memory before its line is given up as a quoting error.
MAX_RECORD_LINES = 1000
MAX_RECORD_BYTES = 16 << 20
_QUOTE = ord('"')
_NEWLINE = ord("\n")
_OPEN_QUOTE_ERROR = "unexpected end of data"  # the csv module's word for an unclosed quote
# Undecodable bytes of a non-UTF-8 file become lone surrogates U+DC00 + byte (as Python's
# surrogateescape, which cannot mark bytes below 0x80), written to UTF-8 with surrogatepass:
# invalid UTF-8, so the record is found bad and the byte is named.
_ESCAPE = "vaepipe.csv_escape"


def _escape_bytes(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = err.object[err.start : err.end]
    return "".join(chr(0xDC00 + b) for b in bad), err.end


codecs.register_error(_ESCAPE, _escape_bytes)


def is_utf8(encoding: str) -> bool:
    """Whether `encoding` names UTF-8 (any spelling), read as bytes without conversion."""
    return codecs.lookup(encoding).name == "utf-8"


class Utf8Stream:
    """A binary file read through a text codec and handed on as UTF-8 bytes (`read`,
    `readline`), so that splitting and parsing work on UTF-8 whatever the file's encoding."""

    def __init__(self, handle, encoding: str, piece_bytes: int = 1 << 20):
        self._handle = handle
        self._decoder = codecs.getincrementaldecoder(encoding)(errors=_ESCAPE)
        self._piece_bytes = piece_bytes
        self._buffer = b""
        self._eof = False

    def _fill(self) -> None:
        piece = self._handle.read(self._piece_bytes)
        self._eof = not piece
        text = self._decoder.decode(piece, final=self._eof)
        self._buffer += text.encode("utf-8", "surrogatepass")

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all with -1); empty only at the end of the file."""
        while not self._eof and (size < 0 or len(self._buffer) < size):
            self._fill()
        cut = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out

    def readline(self) -> bytes:
        while b"\n" not in self._buffer and not self._eof:
            self._fill()
        cut = self._buffer.find(b"\n") + 1 or len(self._buffer)
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out


def text_stream(handle, config: DataConfig):
    """The open file as UTF-8 bytes: itself for UTF-8, else converted from `data.encoding`."""
    return handle if is_utf8(config.encoding) else Utf8Stream(handle, config.encoding)


def parse_header(line: bytes, source: str, delimiter: str, encoding: str = "utf-8") -> list[str]:
    """Column names from a CSV header line (UTF-8 bytes; `encoding` is the file's, for the
    message); a bad header is an error (the file is unusable)."""
    try:
        names = next(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")], delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, StopIteration) as err:
        raise ValueError(f"{source}: cannot read the CSV header as {encoding}: {err}") from err
    names = [n.strip() for n in names]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated or not all(names):
        raise ValueError(f"{source}: CSV header has empty or duplicated names: {duplicated}")
    return names


@dataclass(frozen=True)
class RecordBlock:
    """Whole CSV records of a file: their bytes (newlines included), the offset just past each
    record, and the 1-based number of each record's first line."""

    data: bytes
    ends: np.ndarray
    numbers: np.ndarray

    @classmethod
    def from_lines(
        cls, lines: Sequence[tuple[int, bytes]], width: int, delimiter: str = ","
    ) -> RecordBlock:
        """The records of consecutive numbered lines (each with its newline, if it had one),
        taken as the whole input: a quote still open at the last line closes no record."""
        first = lines[0][0] if lines else 1
        if [n for n, _ in lines] != list(range(first, first + len(lines))):
            raise ValueError("a block holds consecutive lines: their numbers must follow on")
        data = b"".join(line for _, line in lines)
        line_ends = np.cumsum([len(line) for _, line in lines], dtype=np.int64)
        lasts = group_lines(data, line_ends, width, delimiter, at_eof=True)
        return cls(data, line_ends[lasts], first + _first_lines(lasts))

    def records(self) -> list[tuple[int, bytes]]:
        starts = [0, *self.ends[:-1].tolist()]
        spans = zip(self.numbers.tolist(), starts, self.ends.tolist(), strict=True)
        return [(n, self.data[s:e]) for n, s, e in spans]


def _first_lines(lasts: np.ndarray) -> np.ndarray:
    """Index of each record's first line, from the index of each record's last line."""
    if not len(lasts):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], lasts[:-1] + 1]).astype(np.int64)


# ----------------------------------------------------------------- lines -> records


def group_lines(
    data: bytes,
    line_ends: np.ndarray,
    width: int,
    delimiter: str,
    at_eof: bool,
    max_lines: int = MAX_RECORD_LINES,
    max_bytes: int = MAX_RECORD_BYTES,
) -> np.ndarray:
    """The index of the last line of each record in whole lines `data` (starting at a record).

    Only lines with an odd number of quotes can open a multi-line record, so the work is NumPy
    plus a csv check per such line. The records cover all lines, or stop before a record whose
    closing quote may lie past the data (unless `at_eof`): read more and call again from there.
    """
    n = len(line_ends)
    quotes = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _QUOTE)
    per_line = np.bincount(np.searchsorted(line_ends, quotes, side="right"), minlength=n)
    odd = np.flatnonzero(per_line[:n] % 2 == 1)
    if not len(odd):
        return np.arange(n)
    starts = [0, *line_ends[:-1].tolist()]
    ends = line_ends.tolist()
    splitter = _Splitter(delimiter)
    joined = np.zeros(n, dtype=bool)  # lines continued by the next (inside a record)
    covered, stop = -1, n
    for k, a in enumerate(odd.tolist()):
        if a <= covered:
            continue
        closing = int(odd[k + 1]) if k + 1 < len(odd) else None
        last = n - 1 if closing is None else closing
        lines, size = last - a + 1, ends[last] - starts[a]
        if closing is None:
            # Nothing closes a quote opened here, yet: wait for more data while within bounds.
            room = lines < max_lines and size < max_bytes
            if room and not at_eof and _opens_quote(data[starts[a] : ends[a]], splitter):
                stop = a
                break
        elif (
            lines <= max_lines
            and size <= max_bytes
            and _one_record(data[starts[a] : ends[closing]], width, splitter)
        ):
            joined[a:closing] = True
            covered = closing
        # Otherwise line `a` alone is the record (a quoting error if its quote is open).
    return np.arange(stop)[~joined[:stop]]


def _opens_quote(line: bytes, splitter: _Splitter) -> bool:
    """Whether a quoted field is still open at the end of this line."""
    try:
        splitter.split(line.decode("utf-8", "surrogateescape"))
    except csv.Error as err:
        return _OPEN_QUOTE_ERROR in str(err)
    return False


def _one_record(lines: bytes, width: int, splitter: _Splitter) -> bool:
    """Whether these lines are exactly one CSV record of `width` fields: a quoted field opened
    on the first line closes on the last, and nothing is wrong in between."""
    try:
        return len(splitter.split(lines.decode("utf-8", "surrogateescape"))) == width
    except csv.Error:
        return False


class _Splitter:
    """One csv.reader fed one text at a time (a reader per record costs more than parsing it).

    `split` returns the fields of a text that is exactly one CSV record, and raises csv.Error
    otherwise (a newline outside quotes before its end, a quote still open at its end, ...).
    """

    def __init__(self, delimiter: str):
        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(_FIELD_LIMIT)
        self._pending: list[str] = []
        self._reader = csv.reader(self, delimiter=delimiter, strict=True)

    def __iter__(self) -> _Splitter:
        return self

    def __next__(self) -> str:
        if self._pending:
            return self._pending.pop()
        raise StopIteration

    def split(self, text: str) -> list[str]:
        self._pending = [text]
        return next(self._reader, [])


# ------------------------------------------------------------------ records -> chunks


def parse_csv_lines(
    lines: Sequence[tuple[int, bytes]], columns: Sequence[str], source: str, config: DataConfig
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """Parse numbered CSV lines (1-based line numbers) into a chunk plus dead letters."""
    block = RecordBlock.from_lines(lines, len(columns), config.csv_delimiter)
    return parse_csv_block(block, columns, source, config)


def parse_csv_block(
    block: RecordBlock, columns: Sequence[str], source: str, config: DataConfig
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """Parse a block of CSV records into a chunk plus dead letters."""
    fast = _parse_clean_block(block, columns, config.csv_delimiter)
    if fast is not None:
        table, raws, numbers = fast
        return with_ids(table.to_pandas(), raws, numbers, source, config, [], table)
    rows: list[list[str | None]] = []
    raws: list[str] = []
    numbers: list[int] = []
    dead: list[DeadLetter] = []
    splitter = _Splitter(config.csv_delimiter)
    for number, record in block.records():
        fields, raw, problem = _split_record(record, len(columns), config.encoding, splitter)
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
    block: RecordBlock, columns: Sequence[str], delimiter: str
) -> tuple[pa.Table, RawLines, np.ndarray] | None:
    """The fast path: the whole block through Arrow's C++ CSV reader (a table of strings), or
    None to go record by record.

    Only taken for blocks whose every record is a plain line (no quotes, so no multi-line
    records, no NUL bytes or carriage returns other than a CRLF's), where Arrow and the
    per-record parser agree exactly; any error (bad UTF-8, a wrong field count) or a row count
    that differs from the non-empty lines falls back to the per-record path, which finds and
    dead-letters the bad records. Lines are located with NumPy and their text is kept as bytes
    (`RawLines`): no Python work per line.
    """
    data = block.data
    if not data or b'"' in data or b"\x00" in data:
        return None
    starts, ends, crlf = _line_spans(data, block.ends)
    if data.count(b"\r") != crlf:
        return None  # a carriage return inside a line: leave it to the per-record path
    kept = np.flatnonzero(ends > starts)
    if _blank_lines_matter(columns, delimiter) and any(
        not data[starts[i] : ends[i]].strip() for i in kept
    ):
        return None  # whitespace-only lines are skipped, not parsed: the per-record path does
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
    return table, raws, block.numbers[kept]


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
    """Whether Arrow could read a whitespace-only line as a record (the per-record parser skips
    it): with one column, or a whitespace delimiter. Otherwise its field count is wrong."""
    return len(columns) == 1 or delimiter.isspace()


def _split_record(
    record: bytes, width: int, encoding: str, splitter: _Splitter
) -> tuple[list[str | None] | None, str, tuple[str, str] | None]:
    """Fields of one record (None for a blank line), its text, and (reason, message) if bad."""
    text, problem = _decode(record, encoding)
    if problem is not None:
        return None, text, problem
    if not text.strip():
        return None, text, None
    try:
        fields = splitter.split(text)
    except csv.Error as err:
        return None, text, (CSV_QUOTING, _quoting_message(err, width))
    if len(fields) != width:
        return None, text, (COLUMN_COUNT, f"expected {width} fields, found {len(fields)}")
    return [f if f != "" else None for f in fields], text, None


def _decode(record: bytes, encoding: str) -> tuple[str, tuple[str, str] | None]:
    """A record's text (its final line end removed) and (reason, message) if it is not text
    in the file's encoding (the text then shows the bad bytes as \\xNN)."""
    try:
        return record.decode("utf-8").rstrip("\r\n"), None
    except UnicodeDecodeError as err:
        if is_utf8(encoding):
            raw = record.decode("utf-8", "backslashreplace").rstrip("\r\n")
            return raw, (BAD_UTF8, f"invalid UTF-8 at byte {err.start}")
    # Converted from another codec: its undecodable bytes are the lone surrogates U+DC00 + b.
    text = record.decode("utf-8", "surrogatepass").rstrip("\r\n")
    marks = [i for i, c in enumerate(text) if 0xDC00 <= ord(c) <= 0xDCFF]
    if not marks:  # not expected: the converted stream is UTF-8 but for those markers
        return text, (BAD_UTF8, f"cannot decode the record as {encoding}")
    raw = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC00 <= ord(c) <= 0xDCFF else c for c in text)
    byte = ord(text[marks[0]]) - 0xDC00
    return raw, (BAD_UTF8, f"byte 0x{byte:02x} at character {marks[0]} is not valid {encoding}")


def _quoting_message(err: csv.Error, width: int) -> str:
    if _OPEN_QUOTE_ERROR in str(err):
        return (
            f"CSV quoting error: a quoted field is not closed (a quoted field may span lines "
            f"only if it closes within {MAX_RECORD_LINES} lines into one record of {width} "
            f"fields)"
        )
    return f"CSV quoting error: {err}"


# ------------------------------------------------------------------------ reading files


def read_header(handle, source: str, config: DataConfig) -> list[str]:
    """The column names on the first line of an open CSV file (in `data.encoding`)."""
    stream = text_stream(handle, config)
    return parse_header(stream.readline(), source, config.csv_delimiter, config.encoding)


def csv_chunks(path: str, config: DataConfig) -> Iterator:
    """(chunk or None, dead letters) per block of `data.chunk_rows` records of a CSV file."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        stream = text_stream(handle, config)
        first = 1
        if config.csv_has_header:
            columns = parse_header(stream.readline(), path, config.csv_delimiter, config.encoding)
            first = 2
        else:
            columns = list(config.column_names or ())
        width, delimiter = len(columns), config.csv_delimiter
        for block in record_blocks(stream, config.chunk_rows, width, delimiter, first):
            yield parse_csv_block(block, columns, path, config)


def record_blocks(
    handle,
    size: int,
    width: int,
    delimiter: str = ",",
    first_number: int = 1,
    piece_bytes: int = 1 << 20,
    bounds: tuple[int, int] = (MAX_RECORD_LINES, MAX_RECORD_BYTES),
) -> Iterator[RecordBlock]:
    """The rest of a file as blocks of `size` whole records (the last may be shorter).

    Reads pieces of `piece_bytes` and finds the newlines with NumPy, instead of a `readline`
    call per line (Beam's CompressedFile, for .gz, has `read` too); `bounds` are the most
    lines and bytes a multi-line record may span.
    """
    out = _BlockBuffer(size)
    carry, number = b"", first_number  # lines not yet grouped, from a record's start
    for piece, at_eof in _whole_lines(handle, piece_bytes):
        data = carry + piece
        line_ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE) + 1
        if at_eof and len(data) > (line_ends[-1] if len(line_ends) else 0):
            line_ends = np.append(line_ends, len(data))  # the last line, without a newline
        lasts = group_lines(data, line_ends, width, delimiter, at_eof, *bounds)
        cut = int(line_ends[lasts[-1]]) if len(lasts) else 0
        yield from out.add(data[:cut], line_ends[lasts], number + _first_lines(lasts))
        number += int(lasts[-1]) + 1 if len(lasts) else 0
        carry = data[cut:]
    yield from out.flush()


def _whole_lines(handle, piece_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(bytes ending at a newline, False) per piece read, then (the rest of the file, True)."""
    pending = b""
    while piece := handle.read(piece_bytes):
        pending += piece
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield pending[:cut], False
            pending = pending[cut:]
    yield pending, True


class _BlockBuffer:
    """Collects grouped records and hands them out in blocks of `size` records."""

    def __init__(self, size: int):
        self._size = size
        self._data = b""
        self._ends = np.zeros(0, dtype=np.int64)
        self._numbers = np.zeros(0, dtype=np.int64)

    def add(self, data: bytes, ends: np.ndarray, numbers: np.ndarray) -> Iterator[RecordBlock]:
        self._ends = np.concatenate([self._ends, len(self._data) + ends])
        self._numbers = np.concatenate([self._numbers, numbers])
        self._data += data
        start, done = 0, 0
        while len(self._ends) - done >= self._size:
            yield self._block(start, done, done + self._size)
            start, done = int(self._ends[done + self._size - 1]), done + self._size
        self._data = self._data[start:]
        self._ends = self._ends[done:] - start
        self._numbers = self._numbers[done:]

    def flush(self) -> Iterator[RecordBlock]:
        if len(self._ends):
            yield self._block(0, 0, len(self._ends))

    def _block(self, start: int, first: int, stop: int) -> RecordBlock:
        ends = self._ends[first:stop]
        data = self._data[start : int(ends[-1])]
        return RecordBlock(data, ends - start, self._numbers[first:stop])
