"""BigQuery names: `bq://PROJECT.DATASET.TABLE` inputs, `bq://PROJECT.DATASET` outputs and
day partitions. Shared by the BigQuery source and sink; imports no Beam."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

SCHEME = "bq://"
QUERY_INPUT = "bq://query"

# Project ids hold letters, digits and dashes, dots only in a "domain.com:" prefix (so the
# first dot after it ends the project); dataset and table names are identifiers.
_PROJECT = r"(?:[A-Za-z0-9.\-]+:)?[A-Za-z0-9][A-Za-z0-9\-]*"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE_URI = re.compile(rf"bq://({_PROJECT})\.({_NAME})\.({_NAME})(\$\d{{8}})?")
_DATASET_URI = re.compile(rf"bq://({_PROJECT})\.({_NAME})")
_DAY = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def is_bigquery(uri: str | None) -> bool:
    """Whether an input or output names BigQuery rather than files."""
    return bool(uri) and uri.startswith(SCHEME)


@dataclass(frozen=True)
class TableRef:
    """A BigQuery table, optionally one day partition of it (`decorator` like `$20261126`)."""

    project: str
    dataset: str
    table: str
    decorator: str = ""

    @property
    def spec(self) -> str:
        """Beam's `PROJECT:DATASET.TABLE[$PARTITION]` form."""
        return f"{self.project}:{self.dataset}.{self.table}{self.decorator}"


def parse_table(uri: str) -> TableRef:
    """`bq://PROJECT.DATASET.TABLE[$YYYYMMDD]` -> TableRef; a ValueError names a bad URI."""
    match = _TABLE_URI.fullmatch(uri)
    if not match:
        raise ValueError(
            f"not a BigQuery table: {uri!r} (expected bq://PROJECT.DATASET.TABLE, or "
            f"{QUERY_INPUT} with data.bigquery_query set)"
        )
    return TableRef(match[1], match[2], match[3], match[4] or "")


def parse_dataset(uri: str) -> tuple[str, str]:
    """`bq://PROJECT.DATASET` -> (project, dataset)."""
    match = _DATASET_URI.fullmatch(uri)
    if not match:
        raise ValueError(f"not a BigQuery dataset: {uri!r} (expected bq://PROJECT.DATASET)")
    return match[1], match[2]


def partition_decorator(partition: str | None, today: dt.date | None = None) -> str:
    """The day partition a run writes: its partition when that is a date, else today (UTC)."""
    if partition is None:
        day = today or dt.datetime.now(dt.UTC).date()
        return day.strftime("$%Y%m%d")
    try:
        match = _DAY.fullmatch(partition)
        day = dt.date(int(match[1]), int(match[2]), int(match[3]))
    except (TypeError, ValueError):  # no match, or no such day (2026-02-30)
        raise ValueError(
            "BigQuery outputs are partitioned by day: the partition must be a date "
            f"(YYYY-MM-DD). Received: {partition!r}"
        ) from None
    return day.strftime("$%Y%m%d")
