"""BigQuery as a source of records.

`bq://PROJECT.DATASET.TABLE` reads a table; `bq://query` reads the standard SQL in
`data.bigquery_query`. Rows become the same `RecordChunk`s a Parquet file gives (chunks of
`data.chunk_rows`, raw = the row as JSON), through the same parser, so everything downstream
is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa

from configs.schema import DataConfig
from pipeline.core import metrics
from pipeline.core.bigquery_refs import QUERY_INPUT, parse_table
from pipeline.core.records import DEAD, DeadLetter
from pipeline.sources.columnar import parse_arrow_batch

UNREADABLE_ROWS = "unreadable_rows"


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
        self._rows_read = metrics.counter(metrics.ROWS_READ)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

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
