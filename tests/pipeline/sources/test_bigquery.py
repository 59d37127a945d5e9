"""BigQuery rows -> chunks: content-hash ids, unreadable rows, RowsToChunks in a pipeline."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from configs import load_config
from pipeline.core import metrics
from pipeline.core.records import DEAD
from pipeline.sources.bigquery import UNREADABLE_ROWS, RowsToChunks, content_id, rows_to_chunk

DATA = load_config().data
SOURCE = "bq://p.d.t"
ROWS = [{"x": 1.0, "c": "a"}, {"x": 2.0, "c": "b"}, {"x": 1.0, "c": "a"}]


def test_ids_are_content_hashes_stable_and_shared_by_equal_rows():
    chunk, dead = rows_to_chunk(ROWS, SOURCE, DATA)
    assert dead == []
    ids = chunk.record_ids
    assert ids[0] == ids[2] != ids[1]
    assert ids[0] == content_id(SOURCE, '{"x": 1.0, "c": "a"}')
    assert ids[0].startswith(f"{SOURCE}:") and len(ids[0]) == len(SOURCE) + 1 + 16
    again, _ = rows_to_chunk(list(reversed(ROWS)), SOURCE, DATA)
    assert sorted(again.record_ids) == sorted(ids)  # order-free: the same rows, the same ids


def test_the_id_column_is_used_when_configured():
    rows = [{"id": "k1", "x": 1.0}, {"id": "k2", "x": 2.0}]
    chunk, _ = rows_to_chunk(rows, SOURCE, dataclasses.replace(DATA, id_column="id"))
    assert chunk.record_ids == ["k1", "k2"]


def test_mixed_type_rows_become_unreadable_rows_dead_letters():
    rows = [{"x": 1.0}, {"x": "text"}]
    chunk, dead = rows_to_chunk(rows, SOURCE, DATA)
    assert chunk is None
    assert [d.reason for d in dead] == [UNREADABLE_ROWS, UNREADABLE_ROWS]
    assert dead[1].raw == '{"x": "text"}' and dead[1].stage == "read"
    assert dead[0].message.startswith("cannot read these rows as one table: ")


def test_no_rows_is_nothing():
    assert rows_to_chunk([], SOURCE, DATA) == (None, [])


def test_rows_to_chunks_in_a_pipeline_counts_every_record():
    config = dataclasses.replace(DATA, chunk_rows=2)
    rows = ROWS + [{"x": 4.0, "c": "d"}, {"x": 5.0, "c": "e"}]
    p = BeamTestPipeline()
    out = p | beam.Create(rows) | RowsToChunks(SOURCE, config)
    sizes = out.records | "Rows" >> beam.Map(len) | beam.CombineGlobally(sum)
    assert_that(sizes, equal_to([5]), label="AllRows")
    dead = out[DEAD] | "CountDead" >> beam.combiners.Count.Globally()
    assert_that(dead, equal_to([0]), label="NoDead")
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]
    counts = {c.key.metric.name: c.committed for c in found}
    assert counts[metrics.ROWS_READ] == 5
    assert counts.get(metrics.ROWS_DEAD_LETTERED, 0) == 0
