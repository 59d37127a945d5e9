"""pipeline.jobs.runner: a pipeline built by a function runs to the end on the DirectRunner and
its vaepipe counters come back, summed per name; other namespaces are left out."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from pipeline.core.metrics import ROWS_DEAD_LETTERED, ROWS_READ, counter
from pipeline.jobs.runner import counters, run_pipeline


class _Read(beam.DoFn):
    def __init__(self):
        self._read = counter(ROWS_READ)
        self._dead = counter(ROWS_DEAD_LETTERED)
        self._other = Metrics.counter("someone_else", ROWS_READ)

    def process(self, value):
        self._read.inc()
        self._other.inc(100)
        if value < 0:
            self._dead.inc()
        yield value


def _build(values):
    def build(root):
        rows = root | "Create" >> beam.Create(values)
        # The same counter in two steps: the totals add up across steps.
        _ = rows | "First" >> beam.ParDo(_Read()) | "Second" >> beam.ParDo(_Read())

    return build


def test_run_pipeline_returns_the_vaepipe_counters_of_a_test_pipeline():
    totals = run_pipeline(_build([1, -2, 3, -4, 5]), test_pipeline=BeamTestPipeline())
    assert totals == {ROWS_READ: 10, ROWS_DEAD_LETTERED: 4}


def test_run_pipeline_builds_its_own_pipeline_from_beam_args():
    totals = run_pipeline(_build([7, 8]), ["--runner=DirectRunner"], label="a test job")
    assert totals == {ROWS_READ: 4}


def test_a_pipeline_that_counts_nothing_has_no_counters():
    def build(root):
        _ = root | beam.Create([1, 2]) | beam.Map(lambda v: v)

    assert run_pipeline(build, test_pipeline=BeamTestPipeline()) == {}


class _NoMetrics:
    """A result without metrics (Dataflow's --dry_run)."""

    def metrics(self):
        raise NotImplementedError


def test_counters_of_a_result_without_metrics_is_empty():
    assert counters(_NoMetrics()) == {}
    assert counters(object()) == {}
