"""Input files: which files a pattern names, their format and columns, and `ReadRecords`.

Inputs are file patterns (local paths, globs, `gs://...`) resolved through Beam's file systems.
Each matched file is read by one DoFn in chunks of `data.chunk_rows` records (a large CSV file
by many, one byte range each: `pipeline.sources.ranges`); unreadable rows
go to the dead-letter output with their raw text. A `bq://` input is a BigQuery table or query
(`pipeline.sources.bigquery`), read into the same chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from configs.schema import DataConfig
from pipeline.core import metrics
from pipeline.core.records import DEAD, UNREADABLE_FILE, DeadLetter, RecordChunk
from pipeline.sources import columnar, csvfile, ranges

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
            return csvfile.read_header(handle, path, config)
    if fmt == "parquet":
        with FileSystems.open(path) as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    return []  # tf.Example records carry their names per record


def file_chunks(path: str, config: DataConfig) -> Iterator:
    """(chunk or None, dead letters) for each block of records of one file, in file order."""
    fmt = input_format(path, config)
    if fmt == "csv":
        return csvfile.csv_chunks(path, config)
    if fmt == "parquet":
        return columnar.parquet_chunks(path, config)
    return columnar.tfrecord_chunks(path, config)


class ReadRecords(beam.PTransform):
    """File pattern -> RecordChunks (`records` output) and DeadLetters (`dead_letter` output).

    Each file is parsed by one worker, except CSV files over `data.split_bytes`, which are
    parsed as byte ranges by many (`pipeline.sources.ranges`). The range branch is built only
    when the pattern names such a file when the pipeline is built.
    """

    def __init__(self, pattern: str, config: DataConfig):
        super().__init__()
        self._pattern = pattern
        self._config = config

    def expand(self, pbegin):
        if self._pattern.startswith("bq://"):  # same outputs, rows from BigQuery
            from pipeline.sources.bigquery import ReadBigQueryRecords

            return pbegin | "ReadBigQuery" >> ReadBigQueryRecords(self._pattern, self._config)
        config = self._config
        matched = pbegin | "MatchFiles" >> fileio.MatchFiles(self._pattern)
        if not _any_splittable(self._pattern, config):
            return _parse_files(matched, config)
        # One branch for every file (a file read whole is one "range"): a Flatten of two
        # branches would be a stage boundary, where the DirectRunner holds every record.
        pieces = (
            matched
            | "Ranges" >> beam.FlatMap(_pieces, config)
            | "ReshuffleRanges" >> beam.Reshuffle()
        )
        counts = pieces | "CountLines" >> beam.Map(ranges.count_range, config)
        return pieces | "ParseRanges" >> beam.ParDo(
            _ReadRangeDoFn(config), beam.pvalue.AsDict(counts)
        ).with_outputs(DEAD, main="records")


def _parse_files(matched, config: DataConfig):
    return (
        matched
        | "ReadMatches" >> fileio.ReadMatches()
        | "Reshuffle" >> beam.Reshuffle()
        | "ParseFiles" >> beam.ParDo(_ReadFileDoFn(config)).with_outputs(DEAD, main="records")
    )


def _split(metadata, config: DataConfig) -> bool:
    path = metadata.path
    return input_format(path, config) == "csv" and ranges.splittable(
        path, metadata.size_in_bytes, config
    )


def _any_splittable(pattern: str, config: DataConfig) -> bool:
    if config.split_bytes <= 0:
        return False
    try:
        metadata = FileSystems.match([pattern])[0].metadata_list
    except (OSError, ValueError):  # the job's own checks report a pattern that matches nothing
        return False
    return any(_split(m, config) for m in metadata)


def _pieces(metadata, config: DataConfig) -> list[ranges.ByteRange]:
    if not _split(metadata, config):
        return [ranges.whole_file(metadata.path, metadata.size_in_bytes)]
    return ranges.plan_ranges(metadata.path, metadata.size_in_bytes, config.split_bytes)


def _emit(path: str, chunks: Callable[[], Iterator], rows_read, dead_counter) -> Iterator:
    """A file's (or range's) chunks to the main output and dead letters to theirs, counted;
    a file that cannot be read at all is one dead letter naming it (the rows read before the
    failure were already emitted)."""
    try:
        for chunk, dead in chunks():
            rows_read.inc((len(chunk) if chunk is not None else 0) + len(dead))
            dead_counter.inc(len(dead))
            for letter in dead:
                yield beam.pvalue.TaggedOutput(DEAD, letter)
            if chunk is not None:
                yield chunk
    except (OSError, ValueError, pa.ArrowException) as err:
        _LOG.error("cannot read %s: %s", path, err)
        dead_counter.inc()
        rows_read.inc()
        yield beam.pvalue.TaggedOutput(DEAD, unreadable_file(path, err))


class _ReadFileDoFn(beam.DoFn):
    """Reads one file in chunks; counts every record read (good or dead-lettered)."""

    def __init__(self, config: DataConfig):
        self._config = config
        self._rows_read = metrics.counter(metrics.ROWS_READ)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        path = readable.metadata.path
        chunks = partial(file_chunks, path, self._config)
        yield from _emit(path, chunks, self._rows_read, self._dead)


class _ReadRangeDoFn(beam.DoFn):
    """Reads one byte range of a large CSV file, or a whole file; a file whose records hold a
    quote is read whole by the worker given its first range (the others emit nothing)."""

    def __init__(self, config: DataConfig):
        self._config = config
        self._rows_read = metrics.counter(metrics.ROWS_READ)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, piece: ranges.ByteRange, counts: dict) -> Iterator:
        if piece.whole:
            chunks = partial(file_chunks, piece.path, self._config)
        elif not ranges.file_is_quoted(piece, counts):
            chunks = partial(ranges.range_chunks, piece, counts, self._config)
        elif piece.index == 0:
            chunks = partial(file_chunks, piece.path, self._config)
        else:
            return
        yield from _emit(piece.path, chunks, self._rows_read, self._dead)


def unreadable_file(path: str, err: Exception) -> DeadLetter:
    return DeadLetter(path, path, "read", UNREADABLE_FILE, str(err), "")


__all__ = ["RecordChunk", "ReadRecords", "file_chunks", "input_columns", "input_format"]
