"""Decide each column's kind (numeric, categorical, boolean) and convert chunks to those types.

Kinds are inferred in one global pass over the training data (a Beam CombineFn), because a
chunk alone can mislead (a column that is empty in one chunk). At scoring time the kinds come
from the model bundle, and a value that does not fit its column's kind is a dead letter.

Some columns are left out of the model, with a reason (`column_decisions`), because modelling
them would make every later batch look anomalous: a column that is never observed, a timestamp
(every later batch lies after the training range), and an identifier or free text (nearly one
value per row: a vocabulary of training values says nothing about the next batch's values).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from configs.schema import DataConfig, SchemaConfig
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
# A column of true/false values in any common spelling (pipeline.core.records has the others).
BOOLEAN = "boolean"
# Canonical spellings of a boolean column's two values (its vocabulary, in this order).
FALSE, TRUE = "false", "true"
_FALSE_WORDS = frozenset({"false", "f", "no", "n"})
_TRUE_WORDS = frozenset({"true", "t", "yes", "y"})
_BOOLEAN_SPELLINGS = {
    **{w: FALSE for w in _FALSE_WORDS}, **{w: TRUE for w in _TRUE_WORDS}, "0": FALSE, "1": TRUE
}  # fmt: skip
# ISO 8601 dates and times: 2024-05-01, 2024-05-01T13:45, 2024-05-01 13:45:07.25+02:00, ...Z
_ISO_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
# The distinct-value sketch: the SKETCH_SIZE smallest 64-bit hashes of a column's values
# (a "k minimum values" sketch: exact below SKETCH_SIZE values, about 2% error above).
SKETCH_SIZE = 2048
# What a decision is called in the training report.
MODELLED, LEFT_OUT = "modelled", "left out"
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
    boolean: int = 0  # values spelled as a boolean (true/false, yes/no, 1/0, ...)
    boolean_words: int = 0  # of which words (not 1/0) or Python bools
    timestamp: int = 0  # ISO 8601 date/time text, or date/time objects (Parquet)
    sketch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))

    @property
    def distinct_estimate(self) -> float:
        """About how many distinct values the column holds (exact below SKETCH_SIZE)."""
        if len(self.sketch) < SKETCH_SIZE:
            return float(len(self.sketch))
        return (SKETCH_SIZE - 1) / ((float(self.sketch[SKETCH_SIZE - 1]) + 1.0) / 2.0**64)


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
                out.boolean += prof.boolean
                out.boolean_words += prof.boolean_words
                out.timestamp += prof.timestamp
                out.sketch = _merge_sketch(out.sketch, prof.sketch)
        return merged

    def extract_output(self, acc):
        return acc


def _profile_into(prof: ColumnProfile, values: pd.Series, cap: int) -> None:
    numbers, missing = _parse_numbers(values)
    present = ~missing
    # A column stays a boolean / timestamp candidate only while every value so far was one:
    # once not, those checks are skipped (most columns pay for them on one chunk only).
    maybe_boolean = prof.boolean == prof.present
    maybe_timestamp = prof.timestamp == prof.present
    prof.present += int(present.sum())
    text_values = np.isnan(numbers[present])
    prof.non_numeric += int(text_values.sum())
    finite = numbers[present & np.isfinite(numbers)]
    prof.non_integer += int((finite != np.round(finite)).sum())
    if len(prof.distinct) <= cap:
        prof.distinct |= set(values[present].astype(str).unique()[:cap])
    if not present.any():
        return
    observed = values[present]
    if maybe_boolean:
        words = _boolean_words(observed)
        digits = ~text_values & np.isin(numbers[present], (0.0, 1.0))
        prof.boolean_words += int(words.sum())
        prof.boolean += int((words | digits).sum())
    if maybe_timestamp and text_values.any():
        prof.timestamp += int(_timestamps(observed).sum())
    # Only text is sketched: numbers are never identifiers here (and hashing them is waste).
    if text_values.any():
        prof.sketch = _merge_sketch(prof.sketch, _hashes(observed))


def _boolean_words(values: pd.Series) -> np.ndarray:
    """Which values are Python/NumPy bools or boolean words (any case), not 1/0."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "boolean":
        return np.ones(len(values), dtype=bool)
    if kind not in ("string", "mixed", "mixed-integer"):
        return np.zeros(len(values), dtype=bool)
    words = values.astype(str).str.strip().str.lower().isin(_FALSE_WORDS | _TRUE_WORDS)
    if kind != "string":  # a mix may hold bools among other values (one by one, rare)
        words |= values.map(lambda v: isinstance(v, bool | np.bool_))
    return words.to_numpy(dtype=bool)


def _timestamps(values: pd.Series) -> np.ndarray:
    """Which values are dates/times: date or datetime objects, or ISO 8601 text (the shape
    checked by a regular expression) that pandas reads as a date (so 2024-13-45 is not one)."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("datetime", "datetime64", "date"):
        return np.ones(len(values), dtype=bool)
    if kind != "string":
        return values.map(lambda v: isinstance(v, datetime.date)).to_numpy(dtype=bool)
    text = values.str.strip()
    shaped = text.str.match(_ISO_TIMESTAMP).to_numpy(dtype=bool)
    if shaped.any():
        # The regex fixed the format; pandas (1.5: its ISO 8601 parser) checks the values.
        parsed = pd.to_datetime(text[shaped], errors="coerce", utc=True)
        shaped[shaped] = parsed.notna().to_numpy()
    return shaped


def _hashes(values: pd.Series) -> np.ndarray:
    text = values.astype(str).to_numpy(dtype=object)
    return np.unique(pd.util.hash_array(text, categorize=False))[:SKETCH_SIZE]


def _merge_sketch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.union1d(a, b)[:SKETCH_SIZE].astype(np.uint64)


def decide_kinds(
    profiles: Mapping[str, ColumnProfile],
    config: DataConfig,
    int_categorical_max: int,
    schema: SchemaConfig | None = None,
) -> dict[str, str]:
    """Each modelled column's kind from its profile and the config's forced kinds."""
    decisions = column_decisions(profiles, config, int_categorical_max, schema)
    return modelled_kinds(decisions)


def modelled_kinds(decisions: Mapping[str, dict]) -> dict[str, str]:
    """The kinds of the modelled columns of `column_decisions`' result."""
    return {n: d["kind"] for n, d in decisions.items() if d["decision"] == MODELLED}


def column_decisions(
    profiles: Mapping[str, ColumnProfile],
    config: DataConfig,
    int_categorical_max: int,
    schema: SchemaConfig | None = None,
) -> dict[str, dict]:
    """What becomes of each column (excluded ones aside): {name: {kind, decision, why}}.

    Forced kinds (data.categorical_columns, data.numeric_columns) win, except for a column
    that is never observed: there is nothing to model.
    """
    schema = schema or SchemaConfig()
    decisions = {}
    for name, prof in profiles.items():
        if name not in config.exclude_columns:
            decisions[name] = _decide(name, prof, config, int_categorical_max, schema)
    missing = set(config.categorical_columns) | set(config.numeric_columns)
    missing -= set(profiles)
    if missing:
        raise ValueError(f"columns named in the config are not in the input: {sorted(missing)}")
    return dict(sorted(decisions.items()))


def _decide(
    name: str, prof: ColumnProfile, config: DataConfig, int_max: int, schema: SchemaConfig
) -> dict:
    if prof.present == 0:
        return _left_out("empty", "no value in any training row: nothing to model")
    if name in config.categorical_columns:
        return _modelled(CATEGORICAL, "data.categorical_columns")
    if name in config.numeric_columns:
        return _modelled(NUMERIC, "data.numeric_columns")
    if prof.boolean == prof.present and prof.boolean_words > 0:
        return _modelled(BOOLEAN, "every value is a boolean spelling (true/false, yes/no, 1/0)")
    if prof.timestamp == prof.present:
        return _left_out(
            "timestamp",
            "dates/times: every later batch lies after the training range, so a model of "
            "them would flag whole batches (derive features such as the hour yourself)",
        )
    if prof.non_numeric > 0:
        distinct = prof.distinct_estimate
        share = schema.identifier_distinct_share
        if distinct > schema.max_vocabulary and distinct > share * prof.present:
            return _left_out(
                "identifier",
                f"about {distinct:,.0f} distinct values in {prof.present:,} rows (more than "
                f"schema.max_vocabulary {schema.max_vocabulary} and {share:.0%} of the rows): "
                "an identifier or free text, whose values later batches do not repeat",
            )
        return _modelled(CATEGORICAL, "text values")
    if prof.non_integer == 0 and len(prof.distinct) <= int_max:
        return _modelled(
            INT_CATEGORICAL, f"integers with at most {int_max} values (int_categorical_max_values)"
        )
    return _modelled(NUMERIC, "numbers")


def _modelled(kind: str, why: str) -> dict:
    return {"kind": kind, "decision": MODELLED, "why": why}


def _left_out(kind: str, why: str) -> dict:
    return {"kind": kind, "decision": LEFT_OUT, "why": why}


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
        text = _text_column(chunk, name)
        if kind == NUMERIC:
            numbers, problems = _to_numbers(values, text)
            for reason, rows, message in problems:
                fresh = rows[~bad[rows]]
                dead += chunk.dead_letters(fresh, STAGE, reason, message, field=name)
                bad[rows] = True
            columns[name] = numbers
        elif kind == BOOLEAN:
            columns[name] = to_booleans(values)
        else:
            columns[name] = _to_categories(values, kind, text)
    for name in exclude:
        if name in chunk.frame.columns:
            columns[name] = chunk.frame[name].to_numpy(dtype=object)
    typed = RecordChunk(chunk.source, chunk.record_ids, chunk.raw, pd.DataFrame(columns))
    if not bad.any():  # the usual chunk: no copy of its rows
        return (typed if n else None), dead
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


def _text_column(chunk: RecordChunk, name: str) -> pa.Array | None:
    """Column `name` as the reader's Arrow strings, or None if the reader had none."""
    if chunk.text is None or name not in chunk.text.column_names:
        return None
    return chunk.text.column(name).combine_chunks()


def _parse_numbers(
    values: pd.Series, text: pa.Array | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN where missing or not a number, +-inf where infinite), missing mask.

    Vectorised: Arrow (or pandas) parses the column in C; only the values it could not read
    (usually none) are looked at one by one, to tell missing spellings from text and overflow.
    `text`, the same values as Arrow strings, skips converting Python strings back to Arrow.
    """
    numbers = _arrow_numbers(values) if text is None else _cast_numbers(text)
    if numbers is None:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    missing = _nulls(text) if text is not None else values.isna().to_numpy(dtype=bool)
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
        return _cast_numbers(pa.array(values.to_numpy(dtype=object), type=pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return None


def _cast_numbers(text: pa.Array) -> np.ndarray | None:
    """Arrow strings as float64 (NaN where null), or None if any is not a plain number."""
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False).copy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _nulls(text: pa.Array) -> np.ndarray:
    return text.is_null().to_numpy(zero_copy_only=False).astype(bool)


def _to_numbers(
    values: pd.Series, text: pa.Array | None = None
) -> tuple[np.ndarray, list[tuple[str, np.ndarray, str]]]:
    """Float64 values (NaN = missing) and the rows whose text is not a finite number."""
    numbers, missing = _parse_numbers(values, text)
    not_number = np.flatnonzero(~missing & np.isnan(numbers))
    infinite = np.flatnonzero(np.isinf(numbers))
    problems = []
    if len(not_number):
        problems.append((NOT_A_NUMBER, not_number, "value is not a number"))
    if len(infinite):
        problems.append((NON_FINITE, infinite, "value is infinite or out of float64 range"))
    numbers[infinite] = np.nan
    return numbers, problems


def to_booleans(values: pd.Series) -> np.ndarray:
    """A boolean column's values as "false"/"true" (None = missing), from any common spelling:
    true/false, True/False, TRUE, t/f, yes/no, y/n, 1/0 (and 1.0/0.0), Python bools. Any other
    value stays as written: an unseen category (the OOV bucket), not an error."""
    out = _to_categories(values, CATEGORICAL)
    present = np.array([v is not None for v in out], dtype=bool)
    if not present.any():
        return out
    raw = values[present]
    is_bool = raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    text = pd.Series(out[present], dtype=object).str.strip().str.lower()
    text = text.replace({"1.0": "1", "0.0": "0"})
    canonical = text.map(_BOOLEAN_SPELLINGS).to_numpy(dtype=object)
    bools = raw.to_numpy(dtype=object)
    canonical[is_bool] = [TRUE if bool(v) else FALSE for v in bools[is_bool]]
    known = np.array([c is not None and c == c for c in canonical], dtype=bool)
    kept = out[present]
    kept[known] = canonical[known]
    out[present] = kept
    return out


def _to_categories(values: pd.Series, kind: str, text: pa.Array | None = None) -> np.ndarray:
    """Category spellings as str (None = missing); integer categories in canonical form.

    An integer category is spelled as its integer ("1" for "1.0"); a value that is not an
    integer stays as written, and will fall in the OOV bucket. `text`, the same values as
    Arrow strings, is read in C (and is all text: no check for other types).
    """
    if text is not None:
        out = np.array(text.to_numpy(zero_copy_only=False), dtype=object)
        present = ~_nulls(text)
    else:
        out = values.to_numpy(dtype=object, copy=True)
        present = values.notna().to_numpy(dtype=bool)
        out[~present] = None
    if kind == INT_CATEGORICAL:
        numbers = _arrow_numbers(values) if text is None else _cast_numbers(text)
        if numbers is None:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        integral = present & np.isfinite(numbers)
        integral[integral] = numbers[integral] == np.round(numbers[integral])
        out[integral] = _integer_text(numbers[integral])
        present &= ~integral
    if text is not None:
        return out
    # e.g. numbers from Parquet in a categorical column (checked in C first: usually all text)
    if present.any() and pd.api.types.infer_dtype(out[present], skipna=False) != "string":
        for i in np.flatnonzero(present):
            if not isinstance(out[i], str):
                out[i] = str(out[i])
    return out


def _integer_text(numbers: np.ndarray) -> np.ndarray:
    """Integral float64s as decimal integer text ("3" for 3.0), formatted by Arrow in C."""
    integers = pa.array(numbers.astype(np.int64))
    return pc.cast(integers, pa.string()).to_numpy(zero_copy_only=False)
