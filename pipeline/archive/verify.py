"""The archive's guarantee, checked value by value: what `compress` runs on every block it
writes (decoding the block's own bytes), and what the tests fuzz.

For every record: categories exactly equal (unseen ones too), missing values missing, numbers
within max(absolute, relative * |x|) of the original (bit-equal with tolerance 0), and numbers
of a column that held only integers decoded to integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from configs.schema import CompressConfig
from pipeline.archive.quantize import column_tolerance, within

MAX_REPORTED = 5


class BoundViolation(ValueError):
    """A decoded block breaks the archive's bound; the message names records and columns."""


def violations(
    original: pd.DataFrame,
    decoded: pd.DataFrame,
    encoding,
    settings: CompressConfig,
    record_ids: Sequence[str],
) -> list[str]:
    """One line per broken value (at most MAX_REPORTED per column), naming record and column."""
    problems: list[str] = []
    for spec in encoding.numeric:
        x = original[spec.name].to_numpy(dtype=np.float64)
        y = decoded[spec.name].to_numpy(dtype=np.float64)
        tolerance = column_tolerance(settings, spec.name)
        present = ~np.isnan(x)
        bad = present != ~np.isnan(y)
        ok = np.zeros(len(x), bool)
        ok[present] = within(x[present], y[present], tolerance)
        bad |= present & ~ok
        integral = present & (x == np.rint(x))
        if integral[present].all():
            with np.errstate(invalid="ignore"):
                bad |= present & (y != np.rint(y))
        problems += _lines(bad, spec.name, x, y, record_ids, f"bound {tolerance}")
    for spec in encoding.categorical:
        x = original[spec.name].to_numpy(dtype=object)
        y = decoded[spec.name].to_numpy(dtype=object)
        bad = np.asarray([a != b for a, b in zip(x, y, strict=True)], dtype=bool)
        problems += _lines(bad, spec.name, x, y, record_ids, "categories are exact")
    return problems


def check_block(original, decoded, encoding, settings, record_ids, source: str) -> None:
    problems = violations(original, decoded, encoding, settings, record_ids)
    if problems:
        raise BoundViolation(
            f"compress: the archive block of {source} does not decode within its bound, so "
            "nothing was written (please report this with the model and the rows):\n  "
            + "\n  ".join(problems)
        )


def _lines(bad, column, x, y, record_ids, why: str) -> list[str]:
    rows = np.flatnonzero(bad)
    lines = [
        f"record {record_ids[i]!r}, column {column!r}: {x[i]!r} decoded as {y[i]!r} ({why})"
        for i in rows[:MAX_REPORTED]
    ]
    if len(rows) > MAX_REPORTED:
        lines.append(f"... and {len(rows) - MAX_REPORTED} more in column {column!r}")
    return lines
