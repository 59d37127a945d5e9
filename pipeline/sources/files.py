"""Input files: which files a pattern names, their format and columns, and `ReadRecords`.

Inputs are file patterns (local paths, globs, `gs://...`) resolved through Beam's file systems.
Each matched file is read by one DoFn in chunks of `data.chunk_rows` records; unreadable rows
go to the dead-letter output with their raw text. A `bq://` input is a BigQuery table or query
(`pipeline.sources.bigquery`), read into the same chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from configs.schema import DataConfig
from pipeline.core import metrics
from pipeline.core.records import DEAD, UNREADABLE_FILE, DeadLetter, RecordChunk
from pipeline.sources import columnar, csvfile

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
    """File pattern -> RecordChunks (main output) and DeadLetters (`dead_letter` output)."""

    def __init__(self, pattern: str, config: DataConfig):
        super().__init__()
        self._pattern = pattern
        self._config = config

    def expand(self, pbegin):
        if self._pattern.startswith("bq://"):  # same outputs, rows from BigQuery
            from pipeline.sources.bigquery import ReadBigQueryRecords

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
        self._rows_read = metrics.counter(metrics.ROWS_READ)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        path = readable.metadata.path
        try:
            for chunk, dead in file_chunks(path, self._config):
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
            yield beam.pvalue.TaggedOutput(DEAD, unreadable_file(path, err))


def unreadable_file(path: str, err: Exception) -> DeadLetter:
    return DeadLetter(path, path, "read", UNREADABLE_FILE, str(err), "")


__all__ = ["RecordChunk", "ReadRecords", "file_chunks", "input_columns", "input_format"]
