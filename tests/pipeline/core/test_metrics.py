"""pipeline.core.metrics: every stage's counter lands in our namespace under its name, and the
drivers read it back (here through a real DirectRunner run)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from pipeline.core import metrics

NAMES = (
    metrics.ROWS_READ,
    metrics.ROWS_DEAD_LETTERED,
    metrics.ROWS_SCORED,
    metrics.ROWS_FLAGGED,
    metrics.ROWS_DECODED,
)


def test_counter_names_are_distinct_and_in_the_vaepipe_namespace():
    assert metrics.NAMESPACE == "vaepipe"
    assert len(set(NAMES)) == len(NAMES)
    assert all(name.startswith("rows_") for name in NAMES)


class _Count(beam.DoFn):
    def __init__(self):
        self._read = metrics.counter(metrics.ROWS_READ)
        self._flagged = metrics.counter(metrics.ROWS_FLAGGED)

    def process(self, value):
        self._read.inc()
        if value % 3 == 0:
            self._flagged.inc()
        yield value


def test_counter_counts_under_the_namespace_and_name():
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(range(10)) | beam.ParDo(_Count())
    result = pipeline.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]
    totals = {c.key.metric.name: c.committed for c in found}
    assert totals == {metrics.ROWS_READ: 10, metrics.ROWS_FLAGGED: 4}  # 0, 3, 6, 9
