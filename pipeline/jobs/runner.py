"""Run a pipeline built by a function on the runner Beam arguments name; report counters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.metrics import NAMESPACE
from pipeline.jobs.progress import job_status


def run_pipeline(
    build: Callable[[beam.Pipeline], None],
    beam_args: Sequence[str] = (),
    test_pipeline: beam.Pipeline | None = None,
    label: str = "running the job",
) -> dict[str, int]:
    """Build onto a new pipeline (or `test_pipeline`), run it to the end, return our counters.

    Counters are committed values where the runner has them, attempted values otherwise
    (the DirectRunner reports both). A dry run (Dataflow `--dry_run`) returns no counters.
    """
    root = test_pipeline or beam.Pipeline(options=PipelineOptions(list(beam_args)))
    build(root)
    with job_status(label):
        result = root.run()
        result.wait_until_finish()
    return counters(result)


def counters(result) -> dict[str, int]:
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except (NotImplementedError, AttributeError):
        return {}
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals
