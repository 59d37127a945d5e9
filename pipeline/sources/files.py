"""The only module that reads input files or writes outputs.

Inputs are file patterns (local paths, globs, `gs://...`) resolved through Beam's file systems.
Each matched file is read by one DoFn in chunks of `data.chunk_rows` records; unreadable rows
go to the dead-letter output with their raw text. A `bq://` input is a BigQuery table or query
(`pipeline.bigquery`), read into the same chunks.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from configs.schema import DataConfig
from pipeline.parse import (
    LineBlock,
    parse_arrow_batch,
    parse_csv_block,
    parse_examples,
    parse_header,
)
from pipeline.records import DEAD_LETTER_COLUMNS, UNREADABLE_FILE, DeadLetter, RecordChunk

DEAD = "dead_letter"
_LOG = logging.getLogger(__name__)
_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".tfrecord": "tfrecord"}


def input_format(path: str, config: DataConfig) -> str:
    """The configured format, or the one the file extension implies (`auto`)."""
    if config.format != "auto":
        return config.format
    name = path.lower().removesuffix(".gz")
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise ValueError(
        f"cannot tell the format of {path} from its extension; set data.format "
        f"(one of csv, parquet, tfrecord)"
    )


def match_inputs(pattern: str, limit: int | None = None) -> list[str]:
    """Paths matching `pattern` (driver side, for checks before the job); error if none.
    With `limit`, at most that many are listed (a check that a large folder is not empty)."""
    if pattern.startswith("bq://"):  # a BigQuery table or query: one source, no files
        return [pattern]
    metadata = FileSystems.match([pattern], limits=[limit])[0].metadata_list
    paths = sorted(m.path for m in metadata)
    if not paths:
        raise FileNotFoundError(f"no input files match {pattern}")
    return paths


def input_columns(path: str, config: DataConfig) -> list[str]:
    """Column names of one input file, read from its header or metadata (driver side)."""
    if path.startswith("bq://"):
        return []  # known only once rows arrive (columns are then matched by name)
    fmt = input_format(path, config)
    if fmt == "csv":
        if not config.csv_has_header:
            return list(config.column_names or ())
        with FileSystems.open(path) as handle:
            return parse_header(handle.readline(), path, config.csv_delimiter)
    if fmt == "parquet":
        with FileSystems.open(path) as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    return []  # tf.Example records carry their names per record


class ReadRecords(beam.PTransform):
    """File pattern -> RecordChunks (main output) and DeadLetters (`dead_letter` output)."""

    def __init__(self, pattern: str, config: DataConfig):
        super().__init__()
        self._pattern = pattern
        self._config = config

    def expand(self, pbegin):
        if self._pattern.startswith("bq://"):  # same outputs, rows from BigQuery
            from pipeline.bigquery import ReadBigQueryRecords

            return pbegin | "ReadBigQuery" >> ReadBigQueryRecords(self._pattern, self._config)
        return (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(self._pattern)
            | "ReadMatches" >> fileio.ReadMatches()
            | "Reshuffle" >> beam.Reshuffle()
            | "ParseFiles"
            >> beam.ParDo(_ReadFileDoFn(self._config)).with_outputs(DEAD, main="records")
        )


class _ReadFileDoFn(beam.DoFn):
    """Reads one file in chunks; counts every record read (good or dead-lettered)."""

    def __init__(self, config: DataConfig):
        self._config = config
        self._rows_read = Metrics.counter("vaepipe", "rows_read")
        self._dead = Metrics.counter("vaepipe", "rows_dead_lettered")

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        path = readable.metadata.path
        try:
            for chunk, dead in self._chunks(path):
                self._rows_read.inc((len(chunk) if chunk is not None else 0) + len(dead))
                self._dead.inc(len(dead))
                for letter in dead:
                    yield beam.pvalue.TaggedOutput(DEAD, letter)
                if chunk is not None:
                    yield chunk
        except (OSError, ValueError, pa.ArrowException) as err:
            # A file that cannot be read at all (bad header, corrupt Parquet) is one dead letter
            # naming the file; the rows read before the failure were already emitted.
            _LOG.error("cannot read %s: %s", path, err)
            self._dead.inc()
            self._rows_read.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD, DeadLetter(path, path, "read", UNREADABLE_FILE, str(err), "")
            )

    def _chunks(self, path: str) -> Iterator[tuple[RecordChunk | None, list[DeadLetter]]]:
        fmt = input_format(path, self._config)
        if fmt == "csv":
            return _csv_chunks(path, self._config)
        if fmt == "parquet":
            return _parquet_chunks(path, self._config)
        return _tfrecord_chunks(path, self._config)


def _csv_chunks(path: str, config: DataConfig) -> Iterator:
    with FileSystems.open(path) as handle:
        first = 1
        if config.csv_has_header:
            columns = parse_header(handle.readline(), path, config.csv_delimiter)
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


def _parquet_chunks(path: str, config: DataConfig) -> Iterator:
    with FileSystems.open(path) as handle:
        first_row = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=config.chunk_rows):
            yield parse_arrow_batch(batch, first_row, path, config)
            first_row += batch.num_rows


def _tfrecord_chunks(path: str, config: DataConfig) -> Iterator:
    from apache_beam.io.tfrecordio import _TFRecordUtil  # Beam's own TFRecord framing reader

    def records(handle):
        while (payload := _TFRecordUtil.read_record(handle)) is not None:
            yield payload

    with FileSystems.open(path) as handle:
        numbered = enumerate(records(handle), start=1)
        for batch in _batched(numbered, config.chunk_rows):
            yield parse_examples(batch, path, config)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def dead_letter_schema() -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in DEAD_LETTER_COLUMNS])


class WriteDeadLetters(beam.PTransform):
    """DeadLetters -> Parquet files under `prefix` (always written, possibly empty)."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, letters):
        return (
            letters
            | "AsRows" >> beam.Map(DeadLetter.as_row)
            | "WriteParquet"
            >> beam.io.WriteToParquet(
                os.path.join(self._directory, "part"),
                dead_letter_schema(),
                file_name_suffix=".parquet",
                num_shards=1,
            )
        )


class WriteTables(beam.PTransform):
    """pyarrow Tables -> Parquet files under `directory` (one schema for all)."""

    def __init__(self, directory: str, schema: pa.Schema, num_shards: int = 0):
        super().__init__()
        self._directory = directory
        self._schema = schema
        self._num_shards = num_shards

    def expand(self, tables):
        return tables | "WriteParquet" >> beam.io.parquetio.WriteToParquetBatched(
            os.path.join(self._directory, "part"),
            self._schema,
            file_name_suffix=".parquet",
            num_shards=self._num_shards,
        )


def remove_folders(parent: str, prefix: str) -> list[str]:
    """Delete every folder directly under `parent` whose name starts with `prefix` (local or
    remote file systems); returns the folders deleted."""
    start = FileSystems.join(parent, prefix)
    found = FileSystems.match([start + "*/**"])[0].metadata_list
    names = {m.path[len(start) :].split("/")[0] for m in found if m.path.startswith(start)}
    folders = {start + name for name in names}
    if os.path.isdir(parent):  # local: also folders that hold only (empty) folders
        folders |= {start + n[len(prefix) :] for n in os.listdir(parent) if n.startswith(prefix)}
    if folders:
        FileSystems.delete(sorted(folders))
    return sorted(folders)


def write_bytes(path: str, data: bytes) -> None:
    """Write a small file through Beam's file systems (local or gs://)."""
    with FileSystems.create(path) as handle:
        handle.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_json(path: str, data: object) -> None:
    write_text(path, json.dumps(data, indent=1, default=str))
