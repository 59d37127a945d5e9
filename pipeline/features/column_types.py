"""Decide each column's kind (numeric or categorical) and convert chunks to those types.

Kinds are inferred in one global pass over the training data (a Beam CombineFn), because a
chunk alone can mislead (a column that is empty in one chunk). At scoring time the kinds come
from the model bundle, and a value that does not fit its column's kind is a dead letter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from configs.schema import DataConfig
from pipeline.core import metrics
from pipeline.core.records import (
    CATEGORICAL,
    DEAD,
    INT_CATEGORICAL,
    NON_FINITE,
    NOT_A_NUMBER,
    NUMERIC,
    DeadLetter,
    RecordChunk,
)

STAGE = "type"
# Tokens read as a missing value in numeric columns: pandas' default NA strings (read_csv's
# na_values: "-nan", "n/a", "#N/A", "<NA>", ... too) plus "None" and "NAN".
_MISSING_TOKENS = frozenset(
    {"nan", "NaN", "NAN", "-nan", "-NaN", "NA", "N/A", "n/a", "#N/A", "#N/A N/A", "#NA", "<NA>",
     "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN", "null", "NULL", "None"}
)  # fmt: skip


@dataclass
class ColumnProfile:
    """What one pass learns about a column: how often it is numeric, integral, how varied."""

    present: int = 0
    non_numeric: int = 0
    non_integer: int = 0
    distinct: set = field(default_factory=set)


class ProfileColumns(beam.CombineFn):
    """Profiles every column over all chunks (distinct values capped to stay small)."""

    def __init__(self, max_distinct: int):
        self._cap = max_distinct + 1

    def create_accumulator(self) -> dict[str, ColumnProfile]:
        return {}

    def add_input(self, acc: dict[str, ColumnProfile], chunk: RecordChunk):
        for name in chunk.frame.columns:
            _profile_into(acc.setdefault(name, ColumnProfile()), chunk.frame[name], self._cap)
        return acc

    def merge_accumulators(self, accs):
        merged: dict[str, ColumnProfile] = {}
        for acc in accs:
            for name, prof in acc.items():
                out = merged.setdefault(name, ColumnProfile())
                out.present += prof.present
                out.non_numeric += prof.non_numeric
                out.non_integer += prof.non_integer
                out.distinct |= prof.distinct
                if len(out.distinct) > self._cap:
                    out.distinct = set(list(out.distinct)[: self._cap])
        return merged

    def extract_output(self, acc):
        return acc


def _profile_into(prof: ColumnProfile, values: pd.Series, cap: int) -> None:
    numbers, missing = _parse_numbers(values)
    present = ~missing
    prof.present += int(present.sum())
    prof.non_numeric += int(np.isnan(numbers[present]).sum())
    finite = numbers[present & np.isfinite(numbers)]
    prof.non_integer += int((finite != np.round(finite)).sum())
    if len(prof.distinct) <= cap:
        prof.distinct |= set(values[present].astype(str).unique()[:cap])


def decide_kinds(
    profiles: Mapping[str, ColumnProfile], config: DataConfig, int_categorical_max: int
) -> dict[str, str]:
    """Each modelled column's kind from its profile and the config's forced kinds."""
    kinds = {}
    for name, prof in profiles.items():
        if name in config.exclude_columns:
            continue
        if name in config.categorical_columns:
            kinds[name] = CATEGORICAL
        elif name in config.numeric_columns or prof.present == 0:
            kinds[name] = NUMERIC
        elif prof.non_numeric > 0:
            kinds[name] = CATEGORICAL
        elif prof.non_integer == 0 and len(prof.distinct) <= int_categorical_max:
            kinds[name] = INT_CATEGORICAL
        else:
            kinds[name] = NUMERIC
    missing = set(config.categorical_columns) | set(config.numeric_columns)
    missing -= set(profiles)
    if missing:
        raise ValueError(f"columns named in the config are not in the input: {sorted(missing)}")
    return dict(sorted(kinds.items()))


def apply_kinds(
    chunk: RecordChunk, kinds: Mapping[str, str], exclude: tuple[str, ...] = ()
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """Convert modelled columns to their kinds; rows with unusable numbers become dead letters.

    Returns a chunk whose frame holds the modelled columns (float64 for numeric, str or None for
    categorical) followed by the excluded columns as read. Columns absent from the input are
    all-missing. Missing values (empty, NaN spellings) stay missing: they are legitimate data.
    """
    n = len(chunk)
    bad = np.zeros(n, dtype=bool)
    dead: list[DeadLetter] = []
    columns: dict[str, object] = {}
    for name, kind in kinds.items():
        values = chunk.frame[name] if name in chunk.frame.columns else pd.Series([None] * n)
        if kind == NUMERIC:
            numbers, problems = _to_numbers(values)
            for reason, rows, message in problems:
                fresh = rows[~bad[rows]]
                dead += chunk.dead_letters(fresh, STAGE, reason, message, field=name)
                bad[rows] = True
            columns[name] = numbers
        else:
            columns[name] = _to_categories(values, kind)
    for name in exclude:
        if name in chunk.frame.columns:
            columns[name] = chunk.frame[name].to_numpy(dtype=object)
    typed = RecordChunk(chunk.source, chunk.record_ids, chunk.raw, pd.DataFrame(columns))
    return (typed.take(~bad) if (~bad).any() else None), dead


class ApplyKindsDoFn(beam.DoFn):
    """Typed chunks out; rows whose values do not fit their column's kind to dead letters.

    The kinds come from the constructor (scoring: the bundle's) or, when computed inside the
    pipeline (training), as a side input to `process`.
    """

    def __init__(self, exclude: tuple[str, ...], kinds: Mapping[str, str] | None = None):
        self._exclude = tuple(exclude)
        self._kinds = dict(kinds) if kinds is not None else None
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, chunk: RecordChunk, kinds: Mapping[str, str] | None = None) -> Iterator:
        typed, dead = apply_kinds(chunk, kinds if kinds is not None else self._kinds, self._exclude)
        self._dead.inc(len(dead))
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        if typed is not None:
            yield typed


def _blank(value: object) -> bool:
    return isinstance(value, str) and (not value.strip() or value.strip() in _MISSING_TOKENS)


def _overflowed(value: object) -> float:
    """+-inf for a number beyond float64 range ("1e400", which pandas reads as NaN), else NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return np.nan
    return number if np.isinf(number) else np.nan


def _parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN where missing or not a number, +-inf where infinite), missing mask.

    Vectorised: pandas parses the column in C; only the values it could not read (usually
    none) are looked at one by one, to tell missing spellings from text and overflow.
    """
    numbers = _arrow_numbers(values)
    if numbers is None:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    missing = values.isna().to_numpy(dtype=bool)
    for i in np.flatnonzero(np.isnan(numbers) & ~missing):
        value = values.iloc[i]
        if _blank(value):
            missing[i] = True
        else:
            numbers[i] = _overflowed(value)
    return numbers, missing


def _arrow_numbers(values: pd.Series) -> np.ndarray | None:
    """A column of number spellings parsed by Arrow's C++ cast (about 4x pandas' speed), or
    None when any value is not plain text of a number (then pandas, value by value)."""
    try:
        text = pa.array(values.to_numpy(dtype=object), type=pa.string())
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False).copy()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return None


def _to_numbers(values: pd.Series) -> tuple[np.ndarray, list[tuple[str, np.ndarray, str]]]:
    """Float64 values (NaN = missing) and the rows whose text is not a finite number."""
    numbers, missing = _parse_numbers(values)
    not_number = np.flatnonzero(~missing & np.isnan(numbers))
    infinite = np.flatnonzero(np.isinf(numbers))
    problems = []
    if len(not_number):
        problems.append((NOT_A_NUMBER, not_number, "value is not a number"))
    if len(infinite):
        problems.append((NON_FINITE, infinite, "value is infinite or out of float64 range"))
    numbers[infinite] = np.nan
    return numbers, problems


def _to_categories(values: pd.Series, kind: str) -> np.ndarray:
    """Category spellings as str (None = missing); integer categories in canonical form.

    An integer category is spelled as its integer ("1" for "1.0"); a value that is not an
    integer stays as written, and will fall in the OOV bucket.
    """
    out = values.to_numpy(dtype=object, copy=True)
    present = values.notna().to_numpy(dtype=bool)
    out[~present] = None
    if kind == INT_CATEGORICAL:
        numbers = _arrow_numbers(values)
        if numbers is None:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        integral = present & np.isfinite(numbers)
        integral[integral] = numbers[integral] == np.round(numbers[integral])
        out[integral] = numbers[integral].astype(np.int64).astype(str)
        present &= ~integral
    # e.g. numbers from Parquet in a categorical column (checked in C first: usually all text)
    if present.any() and pd.api.types.infer_dtype(out[present], skipna=False) != "string":
        for i in np.flatnonzero(present):
            if not isinstance(out[i], str):
                out[i] = str(out[i])
    return out
