"""pipeline.core.bigquery_refs: bq:// table and dataset names, and the day partition a run
writes."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.core.bigquery_refs import (
    QUERY_INPUT,
    TableRef,
    is_bigquery,
    parse_dataset,
    parse_table,
    partition_decorator,
)


def test_is_bigquery():
    assert is_bigquery("bq://p.d.t") and is_bigquery(QUERY_INPUT)
    assert not is_bigquery("gs://bucket/x.csv") and not is_bigquery("") and not is_bigquery(None)


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("bq://my-project.sales.orders", TableRef("my-project", "sales", "orders")),
        ("bq://p1.d_1.t_2$20261126", TableRef("p1", "d_1", "t_2", "$20261126")),
        # a domain-scoped project: the first dot after "domain.com:" ends the project
        ("bq://example.com:proj.ds.tbl", TableRef("example.com:proj", "ds", "tbl")),
    ],
)
def test_parse_table(uri, ref):
    assert parse_table(uri) == ref


def test_table_spec_is_beams_form():
    assert TableRef("p", "d", "t").spec == "p:d.t"
    assert TableRef("p", "d", "t", "$20260101").spec == "p:d.t$20260101"


@pytest.mark.parametrize(
    "uri",
    ["bq://p.d", "bq://p.d.t.x", "p.d.t", "bq://p.d.1table", "bq://p.d.t$2026", "bq://-p.d.t"],
)
def test_bad_table_uris_are_named(uri):
    with pytest.raises(ValueError) as caught:
        parse_table(uri)
    assert repr(uri) in str(caught.value)
    assert "bq://PROJECT.DATASET.TABLE" in str(caught.value)


def test_parse_dataset():
    assert parse_dataset("bq://my-proj.scores") == ("my-proj", "scores")
    assert parse_dataset("bq://example.com:p.ds") == ("example.com:p", "ds")
    for uri in ("bq://my-proj", "bq://p.d.t", "gs://b/d"):
        with pytest.raises(ValueError, match=r"not a BigQuery dataset: .*bq://PROJECT\.DATASET"):
            parse_dataset(uri)


@pytest.mark.parametrize("partition", ["2026-11-26", "20261126"])
def test_a_date_partition_is_that_day(partition):
    assert partition_decorator(partition) == "$20261126"


def test_no_partition_is_the_given_or_current_utc_day():
    assert partition_decorator(None, today=dt.date(2025, 2, 3)) == "$20250203"
    before = dt.datetime.now(dt.UTC).date()
    decorator = partition_decorator(None)
    after = dt.datetime.now(dt.UTC).date()
    assert decorator in {before.strftime("$%Y%m%d"), after.strftime("$%Y%m%d")}


@pytest.mark.parametrize("partition", ["2026-02-30", "batch-7", "2026-1-5", ""])
def test_a_partition_that_is_not_a_day_is_refused_naming_it(partition):
    with pytest.raises(ValueError) as caught:
        partition_decorator(partition)
    assert "partition must be a date (YYYY-MM-DD)" in str(caught.value)
    assert f"Received: {partition!r}" in str(caught.value)
