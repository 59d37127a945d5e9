"""Large CSV files read as byte ranges, so that one file is parsed by many workers.

A file larger than `data.split_bytes` is cut into ranges of about that size. Record ids stay
`<file>:<line>` (the line numbers a reader of the whole file gives), so a first, cheap pass
counts each range's newlines (bytes.count, memory speed) and the parsing pass adds up the counts
of the ranges before it. A range owns the records whose first byte lies in it: it starts just
after the first line end at or after its first byte, and it finishes the line that straddles
its last byte.

Only a line end outside quotes ends a record, and where a range starts inside a quoted field
cannot be told without reading the file from the start (the whole-file reader also gives up on
an unclosed quote after `MAX_RECORD_LINES`, which no local rule reproduces). So a file is split
only if its records hold no quote character at all, which the counting pass checks; any other
file is read whole by one worker, as a file below the size is. Files in another text encoding
than UTF-8 (a line end byte may be part of a character) and compressed files (not seekable) are
never split.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from configs.schema import DataConfig
from pipeline.sources import csvfile

_PIECE = 8 << 20  # bytes read at once by the counting pass
_QUOTE = b'"'


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of a CSV file, the `index`-th of its `count` ranges; `whole`: a file
    (of any format) that is read whole, as one range."""

    path: str
    start: int
    end: int
    index: int
    count: int
    whole: bool = False


def whole_file(path: str, size: int) -> ByteRange:
    return ByteRange(path, 0, size, 0, 1, whole=True)


@dataclass(frozen=True)
class RangeCount:
    """What the counting pass found in a range: its line ends, and whether a record in it
    holds a quote (the header line's quotes do not count: the header is parsed apart)."""

    newlines: int
    quoted: bool


def splittable(path: str, size: int, config: DataConfig) -> bool:
    """Whether a file may be read as ranges: large, UTF-8, uncompressed, with splitting on."""
    return (
        config.split_bytes > 0
        and size > config.split_bytes
        and csvfile.is_utf8(config.encoding)
        and CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED
    )


def plan_ranges(path: str, size: int, split_bytes: int) -> list[ByteRange]:
    """The file's bytes in ranges of about `split_bytes` (the last up to the end)."""
    count = max(1, -(-size // split_bytes))
    bounds = [round(i * size / count) for i in range(count + 1)]
    return [ByteRange(path, bounds[i], bounds[i + 1], i, count) for i in range(count)]


def count_range(piece: ByteRange, config: DataConfig) -> tuple[tuple[str, int], RangeCount]:
    """((path, index), the range's newlines and quote) from one read of its bytes (nothing
    is read for a file read whole)."""
    newlines, quoted = 0, False
    if piece.whole:
        return (piece.path, piece.index), RangeCount(0, False)
    in_header = piece.index == 0 and config.csv_has_header
    with _open(piece.path) as handle:
        handle.seek(piece.start)
        left = piece.end - piece.start
        while left > 0 and (data := handle.read(min(_PIECE, left))):
            left -= len(data)
            newlines += data.count(b"\n")
            if in_header:  # the header's quotes do not count: it is parsed on its own
                cut = data.find(b"\n")
                in_header = cut < 0
                data = b"" if in_header else data[cut + 1 :]
            quoted = quoted or _QUOTE in data
    return (piece.path, piece.index), RangeCount(newlines, quoted)


def file_is_quoted(piece: ByteRange, counts: Mapping[tuple[str, int], RangeCount]) -> bool:
    return any(counts[(piece.path, i)].quoted for i in range(piece.count))


def range_chunks(
    piece: ByteRange, counts: Mapping[tuple[str, int], RangeCount], config: DataConfig
) -> Iterator:
    """(chunk or None, dead letters) per block of the records the range owns."""
    before = sum(counts[(piece.path, i)].newlines for i in range(piece.index))
    with _open(piece.path) as handle:
        columns = _columns(handle, piece.path, config)
        if piece.index == 0:
            position = handle.tell() if config.csv_has_header else 0
            first = 2 if config.csv_has_header else 1
        else:
            handle.seek(piece.start - 1)
            skipped = handle.readline()  # the end of the line the range before owns
            position = piece.start - 1 + len(skipped)
            # The record at `position` follows `before` line ends, plus the one just skipped
            # if it lay inside this range.
            first = before + (1 if position > piece.start else 0) + 1
        handle.seek(position)
        stream = _RangeStream(handle, piece.end - position)
        width, delimiter = len(columns), config.csv_delimiter
        for block in csvfile.record_blocks(stream, config.chunk_rows, width, delimiter, first):
            yield csvfile.parse_csv_block(block, columns, piece.path, config)


def _columns(handle, path: str, config: DataConfig) -> list[str]:
    if not config.csv_has_header:
        return list(config.column_names or ())
    handle.seek(0)
    return csvfile.parse_header(handle.readline(), path, config.csv_delimiter, config.encoding)


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class _RangeStream:
    """`read` of an open file up to `length` bytes, then to the end of the line those bytes
    stop in (the record that starts in the range and ends after it), then nothing."""

    def __init__(self, handle, length: int):
        self._handle = handle
        self._left = length
        self._last = b"\n" if length <= 0 else b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        if self._left > 0:
            data = self._handle.read(self._left if size < 0 else min(size, self._left))
            if not data:
                self._left, self._done = 0, True
                return b""
            self._left -= len(data)
            self._last = data[-1:]
            return data
        if self._done:
            return b""
        self._done = True
        return b"" if self._last == b"\n" else self._rest_of_line()

    def _rest_of_line(self) -> bytes:
        out = b""
        while piece := self._handle.read(1 << 16):
            cut = piece.find(b"\n")
            if cut >= 0:
                return out + piece[: cut + 1]
            out += piece
        return out
