"""The HTML report each train and score run leaves beside its outputs (`pipeline.report`).

A report that cannot be drawn is a warning, never a failed job: the bundle or the scores it
describes are already complete and published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

_LOG = logging.getLogger(__name__)


def leave_report(
    model_dir: str, scores_dir: str | None = None, echo: Callable[[str], None] = print
) -> str | None:
    """Write MODEL/report.html (or SCORES/report.html); returns its path, None if it failed."""
    from pipeline.report.build import write_report

    try:
        path = write_report(model_dir, scores_dir, echo=lambda _: None)
    except Exception as err:  # any failure to draw: the job's outputs stand as they are
        _LOG.debug("report failed", exc_info=True)
        echo(f"WARNING no report.html: {type(err).__name__}: {err}")
        return None
    echo(f"report: {path}")
    return path
