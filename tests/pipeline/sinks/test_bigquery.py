"""pipeline.sinks.bigquery, the parts that need no Google Cloud: the table schema of an Arrow
schema, the JSON rows of an output element, and the day partition a run replaces."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest

from pipeline.core.bigquery_refs import TableRef
from pipeline.core.records import DEAD_LETTER_COLUMNS, DeadLetter
from pipeline.sinks.bigquery import (
    BigQueryOutput,
    WriteBigQueryTable,
    bigquery_schema,
    table_rows,
)
from pipeline.sinks.parquet import dead_letter_schema


def test_each_arrow_type_has_its_bigquery_type_in_column_order():
    schema = pa.schema(
        [
            ("flag", pa.bool_()),
            ("n8", pa.int8()),
            ("n64", pa.int64()),
            ("f16", pa.float16()),
            ("f64", pa.float64()),
            ("s", pa.string()),
            ("ls", pa.large_string()),
            ("b", pa.binary()),
        ]
    )
    fields = bigquery_schema(schema)["fields"]
    assert [f["name"] for f in fields] == schema.names
    assert [f["type"] for f in fields] == [
        "BOOLEAN", "INTEGER", "INTEGER", "FLOAT", "FLOAT", "STRING", "STRING", "BYTES",
    ]  # fmt: skip
    assert {f["mode"] for f in fields} == {"NULLABLE"}


def test_lists_become_repeated_columns_of_their_value_type():
    schema = pa.schema([("code", pa.list_(pa.int8())), ("z", pa.list_(pa.float32(), 4))])
    assert bigquery_schema(schema)["fields"] == [
        {"name": "code", "type": "INTEGER", "mode": "REPEATED"},
        {"name": "z", "type": "FLOAT", "mode": "REPEATED"},
    ]


def test_a_type_without_a_bigquery_type_names_the_column():
    with pytest.raises(ValueError, match=r"column 'when' of type timestamp\[s\] has no BigQuery"):
        bigquery_schema(pa.schema([("when", pa.timestamp("s"))]))


def test_dead_letter_table_is_all_nullable_strings():
    fields = bigquery_schema(dead_letter_schema())["fields"]
    assert [f["name"] for f in fields] == list(DEAD_LETTER_COLUMNS)
    assert {(f["type"], f["mode"]) for f in fields} == {("STRING", "NULLABLE")}


def test_table_rows_are_json_ready_with_non_finite_floats_as_null():
    table = pa.table(
        {
            "record_id": ["a", "b", "c", "d"],
            "score": [1.5, math.nan, math.inf, -math.inf],
            "is_anomaly": [True, False, None, True],
            "code": [[1, -2], [3, 4], [], None],
        }
    )
    assert table_rows(table) == [
        {"record_id": "a", "score": 1.5, "is_anomaly": True, "code": [1, -2]},
        {"record_id": "b", "score": None, "is_anomaly": False, "code": [3, 4]},
        {"record_id": "c", "score": None, "is_anomaly": None, "code": []},
        {"record_id": "d", "score": None, "is_anomaly": True, "code": None},
    ]


def test_a_dead_letter_is_one_row_of_the_dead_letter_columns():
    letter = DeadLetter("r1", "bq://p.d.t", "read", "bad_utf8", "why", "{}", field="x")
    assert table_rows(letter) == [letter.as_row()]
    assert list(table_rows(letter)[0]) == list(DEAD_LETTER_COLUMNS)


def test_an_empty_table_has_no_rows():
    assert table_rows(pa.table({"a": pa.array([], pa.int64())})) == []


def test_for_partition_writes_the_runs_day_in_each_table():
    output = BigQueryOutput.for_partition("bq://my-project.vaepipe", "2026-11-26")
    assert output.decorator == "$20261126"
    assert output.table("flags") == TableRef("my-project", "vaepipe", "flags", "$20261126")
    assert output.table("dead_letter").spec == "my-project:vaepipe.dead_letter$20261126"


def test_for_partition_without_a_partition_is_today_utc():
    today = dt.datetime.now(dt.UTC).date().strftime("$%Y%m%d")
    assert BigQueryOutput.for_partition("bq://p.d", None).decorator == today


@pytest.mark.parametrize(
    ("uri", "partition", "message"),
    [
        ("bq://p.d.t", "2026-11-26", "not a BigQuery dataset: 'bq://p.d.t'"),
        ("gs://bucket/out", "2026-11-26", "not a BigQuery dataset: 'gs://bucket/out'"),
        ("bq://p.d", "batch-7", "partition must be a date (YYYY-MM-DD). Received: 'batch-7'"),
    ],
)
def test_for_partition_refuses_a_bad_dataset_or_partition(uri, partition, message):
    with pytest.raises(ValueError) as caught:
        BigQueryOutput.for_partition(uri, partition)
    assert message in str(caught.value)


def test_writer_targets_the_partition_of_the_named_table():
    output = BigQueryOutput.for_partition("bq://p.d", "2026-01-02")
    schema = pa.schema([("record_id", pa.string())])
    writer = output.writer("codes", schema)
    assert isinstance(writer, WriteBigQueryTable)
    assert writer._table.spec == "p:d.codes$20260102"
