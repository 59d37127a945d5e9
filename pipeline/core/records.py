"""The elements that flow between pipeline stages: chunks of records and dead letters.

Records travel in chunks (a few thousand rows in a pandas DataFrame), never one Python dict per
record, so every stage after parsing is vectorised. A record that cannot go on becomes a
`DeadLetter` carrying its raw input and a reason code; nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

# Reason codes of dead letters (stable strings: users filter on them).
BAD_UTF8 = "bad_utf8"
CSV_QUOTING = "csv_quoting"
COLUMN_COUNT = "column_count"
MISSING_ID = "missing_id"
NOT_A_NUMBER = "not_a_number"
NON_FINITE = "non_finite"
UNREADABLE_FILE = "unreadable_file"
MODEL_ERROR = "model_error"
NON_FINITE_SCORE = "non_finite_score"
# Image files (data.kind image; the policy is in configs/image.yaml and pipeline/images.py).
UNSUPPORTED_EXTENSION = "unsupported_extension"
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TOO_MANY_PIXELS = "too_many_pixels"
TRUNCATED_IMAGE = "truncated_image"
CORRUPT_IMAGE = "corrupt_image"
WRONG_MODE = "wrong_mode"
WRONG_SIZE = "wrong_size"

# The tag of the dead-letter output of every stage that can reject a record.
DEAD = "dead_letter"

# Column kinds: how a modelled column is typed, encoded and given a likelihood.
NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Integers with few distinct values are modelled as categories (spelled as their decimal text).
INT_CATEGORICAL = "int_categorical"
COLUMN_KINDS = (NUMERIC, CATEGORICAL, INT_CATEGORICAL)

DEAD_LETTER_COLUMNS = ("record_id", "source", "stage", "reason", "field", "message", "raw")


class RawLines(Sequence):
    """The raw text of a chunk's CSV records, kept as the bytes read and decoded on demand.

    Almost no record is ever dead-lettered, so decoding every line to a `str` up front (a
    million Python strings per million rows) is wasted work; a line is decoded only when a dead
    letter needs it. The text was checked as UTF-8 when parsed.
    """

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray):
        self._data = data
        self._starts = starts
        self._ends = ends

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> str:
        return self._data[self._starts[i] : self._ends[i]].decode("utf-8", "backslashreplace")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def take(self, index: np.ndarray) -> RawLines:
        return RawLines(self._data, self._starts[index], self._ends[index])


class JsonRows(Sequence):
    """The raw input of rows that came as values (a DataFrame, Parquet): each row as JSON text,
    written only when a dead letter needs it, as `RawLines` decodes a CSV line only then."""

    def __init__(self, frame: pd.DataFrame, rows: np.ndarray | None = None):
        self._frame = frame
        self._rows = np.arange(len(frame)) if rows is None else np.asarray(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return JsonRows(self._frame, self._rows[i])
        row = self._frame.iloc[int(self._rows[i])]
        values = {str(k): v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
        return json.dumps(values, default=str)

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def take(self, index: np.ndarray) -> JsonRows:
        return JsonRows(self._frame, self._rows[index])


def take_raw(raw: Sequence[str], index: np.ndarray) -> Sequence[str]:
    """The raw inputs at integer positions `index` (lazily, for `RawLines` and `JsonRows`)."""
    if isinstance(raw, RawLines | JsonRows):
        return raw.take(index)
    return [raw[i] for i in index]


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be parsed, encoded or scored, with why and its raw input."""

    record_id: str
    source: str
    stage: str
    reason: str
    message: str
    raw: str
    field: str | None = None

    def as_row(self) -> dict:
        return {name: getattr(self, name) for name in DEAD_LETTER_COLUMNS}


@dataclass
class RecordChunk:
    """Rows read from one source file, as read (CSV values are strings, None where empty).

    Attributes:
      source: the file the rows came from.
      record_ids: one id per row (from `data.id_column` or derived from file and row).
      raw: the raw input of each row (the CSV line, or JSON for binary formats); a list or
        `RawLines`.
      frame: the columns, one row per record, indexed 0..n-1.
      text: the same columns as Arrow strings (null where empty), when the reader parsed
        them with Arrow (CSV's fast path); typing then casts them in C instead of converting
        Python strings back to Arrow. None otherwise.
    """

    source: str
    record_ids: list[str]
    raw: Sequence[str]
    frame: pd.DataFrame
    text: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.record_ids)

    def take(self, rows: np.ndarray) -> RecordChunk:
        """The chunk restricted to the boolean or integer row selection `rows`."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        return RecordChunk(
            source=self.source,
            record_ids=[self.record_ids[i] for i in index],
            raw=take_raw(self.raw, index),
            frame=self.frame.iloc[index].reset_index(drop=True),
            text=None if self.text is None else self.text.take(index),
        )

    def dead_letters(
        self, rows: np.ndarray, stage: str, reason: str, message: str, field: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters for the integer row positions `rows`, all with the same reason."""
        return [
            DeadLetter(
                record_id=self.record_ids[i],
                source=self.source,
                stage=stage,
                reason=reason,
                message=message,
                raw=self.raw[i],
                field=field,
            )
            for i in rows
        ]


@dataclass
class EncodedChunk:
    """Records ready for the model: the packed model input plus what travels beside it."""

    source: str
    record_ids: list[str]
    raw: Sequence[str]
    inputs: np.ndarray
    passthrough: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __len__(self) -> int:
        return len(self.record_ids)
