"""The job counters, in one place: every stage counts under these names, and the drivers read
them back to print and save the row accounting (rows read = scored + dead-lettered)."""

from __future__ import annotations

NAMESPACE = "vaepipe"
ROWS_READ = "rows_read"
ROWS_DEAD_LETTERED = "rows_dead_lettered"
ROWS_SCORED = "rows_scored"
ROWS_FLAGGED = "rows_flagged"
ROWS_DECODED = "rows_decoded"


def counter(name: str):
    """A Beam counter of ours (created where a DoFn is constructed)."""
    from apache_beam.metrics import Metrics

    return Metrics.counter(NAMESPACE, name)
