"""BigQuery as a sink for flags, codes and dead letters.

`bq://PROJECT.DATASET` names a dataset; each output (flags, codes, dead_letter) is a table
there, partitioned by day. A run replaces one day partition per table with a FILE_LOADS load job
(WRITE_TRUNCATE on `table$YYYYMMDD`): a load job is atomic, so readers see the old rows or the
new ones, never a mix, and re-running a day replaces that day only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa

from pipeline.core.bigquery_refs import TableRef, parse_dataset, partition_decorator
from pipeline.core.records import DeadLetter

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
