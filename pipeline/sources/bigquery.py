"""BigQuery as a source of records and as a sink for flags, codes and dead letters.

Sources: `bq://PROJECT.DATASET.TABLE` reads a table; `bq://query` reads the standard SQL in
`data.bigquery_query`. Rows become the same `RecordChunk`s a Parquet file gives (chunks of
`data.chunk_rows`, raw = the row as JSON), through the same parser, so everything downstream
is unchanged.

Sink: `bq://PROJECT.DATASET` names a dataset; each output (flags, codes, dead_letter) is a table
there, partitioned by day. A run replaces one day partition per table with a FILE_LOADS load job
(WRITE_TRUNCATE on `table$YYYYMMDD`): a load job is atomic, so readers see the old rows or the
new ones, never a mix, and re-running a day replaces that day only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from configs.schema import DataConfig
from pipeline.io import DEAD
from pipeline.parse import parse_arrow_batch
from pipeline.records import DeadLetter

SCHEME = "bq://"
QUERY_INPUT = "bq://query"
UNREADABLE_ROWS = "unreadable_rows"

# Project ids hold letters, digits and dashes, dots only in a "domain.com:" prefix (so the
# first dot after it ends the project); dataset and table names are identifiers.
_PROJECT = r"(?:[A-Za-z0-9.\-]+:)?[A-Za-z0-9][A-Za-z0-9\-]*"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE_URI = re.compile(rf"bq://({_PROJECT})\.({_NAME})\.({_NAME})(\$\d{{8}})?")
_DATASET_URI = re.compile(rf"bq://({_PROJECT})\.({_NAME})")
_DAY = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def is_bigquery(uri: str | None) -> bool:
    """Whether an input or output names BigQuery rather than files."""
    return bool(uri) and uri.startswith(SCHEME)


@dataclass(frozen=True)
class TableRef:
    """A BigQuery table, optionally one day partition of it (`decorator` like `$20261126`)."""

    project: str
    dataset: str
    table: str
    decorator: str = ""

    @property
    def spec(self) -> str:
        """Beam's `PROJECT:DATASET.TABLE[$PARTITION]` form."""
        return f"{self.project}:{self.dataset}.{self.table}{self.decorator}"


def parse_table(uri: str) -> TableRef:
    """`bq://PROJECT.DATASET.TABLE[$YYYYMMDD]` -> TableRef; a ValueError names a bad URI."""
    match = _TABLE_URI.fullmatch(uri)
    if not match:
        raise ValueError(
            f"not a BigQuery table: {uri!r} (expected bq://PROJECT.DATASET.TABLE, or "
            f"{QUERY_INPUT} with data.bigquery_query set)"
        )
    return TableRef(match[1], match[2], match[3], match[4] or "")


def parse_dataset(uri: str) -> tuple[str, str]:
    """`bq://PROJECT.DATASET` -> (project, dataset)."""
    match = _DATASET_URI.fullmatch(uri)
    if not match:
        raise ValueError(f"not a BigQuery dataset: {uri!r} (expected bq://PROJECT.DATASET)")
    return match[1], match[2]


def partition_decorator(partition: str | None, today: dt.date | None = None) -> str:
    """The day partition a run writes: its partition when that is a date, else today (UTC)."""
    if partition is None:
        day = today or dt.datetime.now(dt.UTC).date()
        return day.strftime("$%Y%m%d")
    try:
        match = _DAY.fullmatch(partition)
        day = dt.date(int(match[1]), int(match[2]), int(match[3]))
    except (TypeError, ValueError):  # no match, or no such day (2026-02-30)
        raise ValueError(
            "BigQuery outputs are partitioned by day: the partition must be a date "
            f"(YYYY-MM-DD). Received: {partition!r}"
        ) from None
    return day.strftime("$%Y%m%d")


# ---------------------------------------------------------------------------------- source


class ReadBigQueryRecords(beam.PTransform):
    """A BigQuery table or query -> RecordChunks (main) and DeadLetters (`dead_letter`).

    Reads with Beam's ReadFromBigQuery (EXPORT: BigQuery writes the rows to files under the
    job's temp_location, which workers read in parallel).
    `validate=False`: nothing is looked up while the graph is built, so a job translates
    offline and the Flex Template launcher does not need BigQuery read permissions.
    """

    def __init__(self, uri: str, config: DataConfig):
        super().__init__()
        self._uri = uri
        self._config = config

    def expand(self, pbegin):
        if self._uri == QUERY_INPUT:
            if not self._config.bigquery_query:
                raise ValueError(f"input {QUERY_INPUT} needs data.bigquery_query (standard SQL)")
            source = {"query": self._config.bigquery_query, "use_standard_sql": True}
        else:
            source = {"table": parse_table(self._uri).spec}
        rows = pbegin | "ReadFromBigQuery" >> beam.io.ReadFromBigQuery(validate=False, **source)
        return rows | "RowsToChunks" >> RowsToChunks(self._uri, self._config)


class RowsToChunks(beam.PTransform):
    """Row dicts -> RecordChunks of up to `chunk_rows` rows, plus DeadLetters."""

    def __init__(self, source: str, config: DataConfig):
        super().__init__()
        self._source = source
        self._config = config

    def expand(self, rows):
        size = self._config.chunk_rows
        return (
            rows
            | "BatchRows" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
            | "ParseRows"
            >> beam.ParDo(_ParseRowsDoFn(self._source, self._config)).with_outputs(
                DEAD, main="records"
            )
        )


class _ParseRowsDoFn(beam.DoFn):
    """Counts rows the way the file reader does: read = chunked + dead-lettered."""

    def __init__(self, source: str, config: DataConfig):
        self._source = source
        self._config = config
        self._rows_read = Metrics.counter("vaepipe", "rows_read")
        self._dead = Metrics.counter("vaepipe", "rows_dead_lettered")

    def process(self, rows: list[dict]) -> Iterator:
        chunk, dead = rows_to_chunk(rows, self._source, self._config)
        self._rows_read.inc(len(rows))
        self._dead.inc(len(dead))
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        if chunk is not None:
            yield chunk


def rows_to_chunk(rows: list[dict], source: str, config: DataConfig):
    """Rows (dicts, as BigQuery returns them) -> (RecordChunk or None, dead letters).

    The rows go through the Parquet parser (`parse_arrow_batch`), so a BigQuery row and the
    same row in a Parquet file give the same chunk. BigQuery returns rows in no fixed order,
    so without `data.id_column` a record's id is a hash of its content (stable across re-runs;
    identical rows share an id), not its position.
    """
    if not rows:
        return None, []
    try:
        batch = pa.RecordBatch.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as err:  # mixed types within a column
        message = f"cannot read these rows as one table: {err}"
        return None, [_row_letter(row, source, message) for row in rows]
    chunk, dead = parse_arrow_batch(batch, 0, source, config)
    if chunk is not None and config.id_column is None:
        chunk.record_ids = [content_id(source, raw) for raw in chunk.raw]
    return chunk, dead


def content_id(source: str, raw: str) -> str:
    digest = hashlib.blake2b(raw.encode("utf-8"), digest_size=8).hexdigest()
    return f"{source}:{digest}"


def _row_letter(row: dict, source: str, message: str) -> DeadLetter:
    raw = json.dumps(row, default=str)
    return DeadLetter(content_id(source, raw), source, "read", UNREADABLE_ROWS, message, raw)


# ------------------------------------------------------------------------------------ sink


_BQ_TYPES = (
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "INTEGER"),
    (pa.types.is_floating, "FLOAT"),
    (pa.types.is_string, "STRING"),
    (pa.types.is_large_string, "STRING"),
    (pa.types.is_binary, "BYTES"),
)


def bigquery_schema(schema: pa.Schema) -> dict:
    """An Arrow schema as a BigQuery table schema (lists become REPEATED columns)."""
    fields = []
    for field in schema:
        kind, mode = field.type, "NULLABLE"
        if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            kind, mode = kind.value_type, "REPEATED"
        fields.append({"name": field.name, "type": _bq_type(kind, field.name), "mode": mode})
    return {"fields": fields}


def _bq_type(kind: pa.DataType, name: str) -> str:
    for test, bq_type in _BQ_TYPES:
        if test(kind):
            return bq_type
    raise ValueError(f"column {name!r} of type {kind} has no BigQuery type here")


@dataclass(frozen=True)
class BigQueryOutput:
    """Where a run's tables go: `bq://PROJECT.DATASET`, one day partition per run.

    `writer(name, schema)` is the sink for one output (flags, codes, dead_letter).
    """

    dataset_uri: str
    decorator: str

    @classmethod
    def for_partition(cls, dataset_uri: str, partition: str | None) -> BigQueryOutput:
        parse_dataset(dataset_uri)
        return cls(dataset_uri, partition_decorator(partition))

    def table(self, name: str) -> TableRef:
        project, dataset = parse_dataset(self.dataset_uri)
        return TableRef(project, dataset, name, self.decorator)

    def writer(self, name: str, schema: pa.Schema) -> beam.PTransform:
        return WriteBigQueryTable(self.table(name), schema)


class WriteBigQueryTable(beam.PTransform):
    """Arrow tables or DeadLetters -> one day partition of a BigQuery table, replaced whole.

    FILE_LOADS writes JSON files to temp_location and runs one load job per destination
    (below BigQuery's 15 TB / 10,000 files per load job), so the partition's rows change in
    one step. The table is created on first use, partitioned by ingestion day (query it with
    `WHERE _PARTITIONDATE = '2026-11-26'`).
    """

    def __init__(self, table: TableRef, schema: pa.Schema):
        super().__init__()
        self._table = table
        self._schema = schema

    def expand(self, elements):
        return (
            elements
            | "ToRows" >> beam.FlatMap(table_rows)
            | "WriteToBigQuery"
            >> beam.io.WriteToBigQuery(
                table=self._table.spec,
                schema=bigquery_schema(self._schema),
                method=beam.io.WriteToBigQuery.Method.FILE_LOADS,
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=beam.io.BigQueryDisposition.WRITE_TRUNCATE,
                additional_bq_parameters={"timePartitioning": {"type": "DAY"}},
            )
        )


def table_rows(element: pa.Table | DeadLetter) -> list[dict]:
    """JSON-ready rows of an output element; NaN and infinities become NULL (JSON has none)."""
    if isinstance(element, DeadLetter):
        return [element.as_row()]
    return [{k: _json_value(v) for k, v in row.items()} for row in element.to_pylist()]


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
