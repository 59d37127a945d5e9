"""Fuzzing the scoring job with malformed records: nothing crashes and no record is lost.

A seeded generator writes thousands of rows, good and bad, to CSV and Parquet files and decides
each row's fate as it writes it: scored (a clean row, a missing value, an unseen category, a
huge but finite number, ...) or dead-lettered with a given reason code (wrong field count, text
in a numeric field, inf, bad UTF-8, quoting errors, ...). The real `vaepipe score` runs once on
all files (small chunks, so many chunks and model batches are exercised) and every row's fate
is checked: good rows scored exactly once, bad rows dead-lettered exactly once with their raw
input and reason, rows read = scored + dead-lettered.

Blank lines are not records (as in pandas): they are skipped and not counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts.bundle import load_bundle
from pipeline.cli import main
from pipeline.cli.demo_data import synthetic_table
from pipeline.core.records import (
    BAD_UTF8,
    CATEGORICAL,
    COLUMN_COUNT,
    CSV_QUOTING,
    INT_CATEGORICAL,
    MISSING_ID,
    MODEL_ERROR,
    NON_FINITE,
    NON_FINITE_SCORE,
    NOT_A_NUMBER,
    NUMERIC,
    EncodedChunk,
)
from pipeline.features.tabular_encoding import TabularEncoding
from pipeline.scoring.core import OUTPUT_KEYS, score_batches, score_chunk

SEED = 20240611
CSV_ROWS_PER_FILE = 1100
CSV_FILES = 3
PARQUET_ROWS = 600
SCORED = "scored"
PARSE_REASONS = {BAD_UTF8, CSV_QUOTING, COLUMN_COUNT, MISSING_ID}  # id is `<source>:<line>`
SCORE_SETTINGS = ["--set", "data.chunk_rows=97", "--set", "scoring.batch_size=32"]

# Spellings of a missing number (pandas' default NA strings, plus None and NAN).
NAN_SPELLINGS = ["nan", "NaN", "NAN", "-nan", "-NaN", "NA", "N/A", "n/a", "#N/A", "<NA>",
                 "null", "NULL", "None", "", " ", "   "]  # fmt: skip
INF_SPELLINGS = ["inf", "-inf", "+inf", "Infinity", "-Infinity", "INF", "1e400", "-1e400",
                 "9" * 400]  # fmt: skip
NOT_NUMBERS = ["abc", "12abc", "1.2.3", "--5", "five", "1\x002", "0x1F", "TRUE", "1e5e5", "1,5"]
HUGE_FINITE = ["1e300", "-1e308", "1.7976931348623157e308", "5e-324", "-0.0", "1e-400"]
UNSEEN = ["atlantis", "Nörth", "北", "🙂", "north ", "NORTH", "x" * 300, "nor\x00th", 'a"b']
BAD_BYTES = [b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80"]


@dataclass(frozen=True)
class Row:
    """One generated input row and its decided fate.

    line: the CSV line (no terminator) or, for Parquet, None; values: the Parquet row.
    fate: SCORED or the dead-letter reason; field: the column a type-stage dead letter names.
    key: the record id the row must have in flags or dead letters.
    """

    record_id: str | None
    fate: str
    field: str | None = None
    line: bytes | None = None
    values: dict | None = None
    key: str = ""


@dataclass(frozen=True)
class Columns:
    """The input's column names and the model's kind of each."""

    header: list[str]
    numeric: list[str]
    categorical: list[str]
    int_categorical: list[str]
    modelled: list[str]  # in the model's column order


def model_columns(model_dir: Path, header: list[str]) -> Columns:
    kinds = TabularEncoding.from_json((model_dir / "encoding.json").read_text()).kinds
    return Columns(
        header=header,
        numeric=[c for c, k in kinds.items() if k == NUMERIC],
        categorical=[c for c, k in kinds.items() if k == CATEGORICAL],
        int_categorical=[c for c, k in kinds.items() if k == INT_CATEGORICAL],
        modelled=list(kinds),
    )


# -------------------------------------------------------------------- CSV row mutations
# Each takes (rng, fields, columns) and returns (line bytes, fate, field named or None).
Mutation = Callable[[np.random.Generator, list[str], Columns], tuple[bytes, str, str | None]]


def _line(fields: list[str]) -> bytes:
    return ",".join(fields).encode("utf-8")


def _with(fields: list[str], cols: Columns, name: str, value: str) -> list[str]:
    out = list(fields)
    out[cols.header.index(name)] = value
    return out


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def clean(rng, fields, cols):
    return _line(fields), SCORED, None


def missing_value(rng, fields, cols):
    name = _pick(rng, cols.numeric + cols.categorical + cols.int_categorical)
    value = _pick(rng, NAN_SPELLINGS) if name in cols.numeric else ""
    return _line(_with(fields, cols, name, value)), SCORED, None


def unseen_category(rng, fields, cols):
    name = _pick(rng, cols.categorical + cols.int_categorical)
    value = _pick(rng, UNSEEN if name in cols.categorical else ["7", "-1", "maybe", "0.5"])
    if '"' in value:
        value = '"' + value.replace('"', '""') + '"'
    return _line(_with(fields, cols, name, value)), SCORED, None


def huge_finite(rng, fields, cols):
    value = _pick(rng, HUGE_FINITE) if rng.random() < 0.8 else f" {_pick(rng, ['5', '7.25'])} "
    return _line(_with(fields, cols, _pick(rng, cols.numeric), value)), SCORED, None


def quoted_fields(rng, fields, cols):
    if rng.random() < 0.5:  # every field quoted, "" escapes inside
        return _line([f'"{f}"' for f in fields]), SCORED, None
    return _line(_with(fields, cols, "label", '"a,b ""c"""')), SCORED, None


def long_value(rng, fields, cols):
    """A very long line that is still one good record (an unseen category or a long label)."""
    name = _pick(rng, cols.categorical + ["label"])
    return (
        _line(_with(fields, cols, name, "y" * _pick(rng, [5_000, 100_000, 200_000]))),
        SCORED,
        None,
    )


def wrong_field_count(rng, fields, cols):
    choice = rng.random()
    if choice < 0.4:
        out = fields[: int(rng.integers(1, len(fields)))]
    elif choice < 0.8:
        out = fields + ["1"] * int(rng.integers(1, 4))
    else:  # a very long line of extra fields
        out = fields + ["123.456"] * int(rng.integers(2_000, 20_000))
    return _line(out), COLUMN_COUNT, None


def text_in_number(rng, fields, cols):
    name = _pick(rng, cols.numeric)
    value = _pick(rng, NOT_NUMBERS)
    value = f'"{value}"' if "," in value else value
    return _line(_with(fields, cols, name, value)), NOT_A_NUMBER, name


def infinite_number(rng, fields, cols):
    name = _pick(rng, cols.numeric)
    return _line(_with(fields, cols, name, _pick(rng, INF_SPELLINGS))), NON_FINITE, name


def two_bad_numbers(rng, fields, cols):
    """Two bad numeric fields: one dead letter, naming the first in the model's column order."""
    pair = [str(c) for c in rng.choice(cols.numeric, size=2, replace=False)]
    first, second = sorted(pair, key=cols.modelled.index)
    reasons = [(NOT_A_NUMBER, "abc"), (NON_FINITE, "-inf")]
    if rng.random() < 0.5:
        reasons.reverse()
    out = _with(_with(fields, cols, first, reasons[0][1]), cols, second, reasons[1][1])
    return _line(out), reasons[0][0], first


def bad_utf8(rng, fields, cols):
    i = int(rng.integers(len(fields)))
    text = _line(fields[:i])
    field = fields[i].encode("utf-8")
    cut = int(rng.integers(len(field) + 1))
    bad = field[:cut] + _pick(rng, BAD_BYTES) + field[cut:]
    rest = _line(fields[i + 1 :])
    line = (text + b"," if i else b"") + bad + (b"," + rest if i + 1 < len(fields) else b"")
    if rng.random() < 0.2:  # bad bytes and a wrong field count: decoding fails first
        line += b",extra"
    return line, BAD_UTF8, None


def quoting_error(rng, fields, cols):
    name = _pick(rng, cols.header[1:])
    value = _pick(rng, ['"abc"x', '"north" ', '"12.5"5', "12\r5", "no\rrth"])
    if rng.random() < 0.4:  # an unterminated quote: the rest of the line is inside it
        value = '"' + fields[cols.header.index(name)]
    return _line(_with(fields, cols, name, value)), CSV_QUOTING, None


def truncated(rng, fields, cols):
    """The last line of a file cut short (no newline after it)."""
    return _line(fields[:4] + [fields[4][: len(fields[4]) // 2]]), COLUMN_COUNT, None


def missing_id(rng, fields, cols):
    return _line(_with(fields, cols, "id", "")), MISSING_ID, None


GOOD: list[tuple[Mutation, float]] = [
    (clean, 0.40),
    (missing_value, 0.25),
    (unseen_category, 0.15),
    (huge_finite, 0.10),
    (quoted_fields, 0.08),
    (long_value, 0.02),
]
BAD: list[tuple[Mutation, float]] = [
    (wrong_field_count, 0.18),
    (text_in_number, 0.18),
    (infinite_number, 0.16),
    (two_bad_numbers, 0.08),
    (bad_utf8, 0.16),
    (quoting_error, 0.16),
    (missing_id, 0.08),
]


def _choose(rng: np.random.Generator, table: list[tuple[Mutation, float]]) -> Mutation:
    weights = np.array([w for _, w in table])
    return table[int(rng.choice(len(table), p=weights / weights.sum()))][0]


def fuzz_csv_rows(
    rng: np.random.Generator, table: pd.DataFrame, cols: Columns, last: Mutation
) -> list[Row]:
    """One Row per base record: about half of them mutated into a bad row; `last` makes the
    last one."""
    lines = table.to_csv(index=False, lineterminator="\n").splitlines()[1:]
    rows = []
    for i, (record_id, text) in enumerate(zip(table["id"], lines, strict=True)):
        mutate = _choose(rng, BAD if rng.random() < 0.5 else GOOD)
        mutate = last if i == len(lines) - 1 else mutate
        line, fate, field = mutate(rng, text.split(","), cols)
        rows.append(Row(record_id=record_id, fate=fate, field=field, line=line))
    return rows


def write_csv(path: Path, header: list[str], rows: list[Row], rng, crlf: bool) -> list[Row]:
    """Write rows with LF or (mostly) CRLF endings; return them with their keys.

    LF files end without a newline after the last line; CRLF files get a few blank lines
    (skipped, not records).
    """
    out = [",".join(header).encode() + (b"\r\n" if crlf else b"\n")]
    keyed, number = [], 1
    for i, row in enumerate(rows):
        if crlf and rng.random() < 0.03:  # blank lines are skipped, not records
            out.append(_pick(rng, [b"\r\n", b"\n", b"   \n"]))
            number += 1
        number += 1
        key = f"{path}:{number}" if row.fate in PARSE_REASONS else row.record_id
        keyed.append(Row(row.record_id, row.fate, row.field, row.line, key=key))
        end = b"\r\n" if crlf and rng.random() < 0.8 else b"\n"
        out.append(row.line + (b"" if i == len(rows) - 1 and not crlf else end))
    path.write_bytes(b"".join(out))
    return keyed


# ------------------------------------------------------------------------- Parquet rows


def fuzz_parquet_rows(rng: np.random.Generator, table: pd.DataFrame, path: Path) -> list[Row]:
    """Rows for a Parquet file: `temperature` is string-typed, the other numbers float64."""
    rows = []
    for number, record in enumerate(table.to_dict(orient="records"), start=1):
        values = {k: (None if pd.isna(v) else v) for k, v in record.items()}
        values["temperature"] = (
            None if values["temperature"] is None else str(values["temperature"])
        )
        fate, field = SCORED, None
        case = int(rng.integers(10))
        if case == 0:
            values[_pick(rng, ["load", "power", "price"])] = _pick(rng, [None, float("nan")])
        elif case == 1:
            values["temperature"] = _pick(rng, [None, " 12.5 ", "NaN", "1e300"])
        elif case == 2:
            values["region"] = _pick(rng, [None, "atlantis", "nor\x00th", "🙂"])
        elif case == 3:
            field = _pick(rng, ["latency_ms", "load"])
            values[field], fate = _pick(rng, [np.inf, -np.inf]), NON_FINITE
        elif case == 4:
            values["temperature"], fate, field = "abc", NOT_A_NUMBER, "temperature"
        elif case == 5:
            values["temperature"], fate, field = "1e400", NON_FINITE, "temperature"
        elif case == 6:
            values["id"], fate = None, MISSING_ID
        key = f"{path}:{number}" if fate in PARSE_REASONS else values["id"]
        rows.append(Row(values["id"], fate, field, values=values, key=key))
    return rows


def write_parquet(path: Path, rows: list[Row]) -> None:
    """Float NaN stays NaN and None becomes null (from_pylist, not from_pandas)."""
    types = {"temperature": pa.string(), "region": pa.string(), "tier": pa.string(),
             "id": pa.string(), "is_weekend": pa.int64(), "label": pa.int64()}  # fmt: skip
    schema = pa.schema([(c, types.get(c, pa.float64())) for c in rows[0].values])
    table = pa.Table.from_pylist([r.values for r in rows], schema=schema)
    pq.write_table(table, path, row_group_size=50)


# ------------------------------------------------------------------------- the fuzz run


@dataclass
class FuzzRun:
    rows: list[Row]
    data_lines: int
    flags: pd.DataFrame
    codes: pd.DataFrame
    dead: pd.DataFrame
    summary: dict
    exit_code: int


def write_inputs(folder: Path, cols: Columns) -> list[Row]:
    rng = np.random.default_rng(SEED)
    rows: list[Row] = []
    # a good last line without a newline, CRLF, a truncated last line without a newline
    files = [(clean, False), (clean, True), (truncated, False)]
    for f, (last, crlf) in enumerate(files):
        table = synthetic_table(CSV_ROWS_PER_FILE, anomaly_rate=0.05, seed=SEED + f)
        generated = fuzz_csv_rows(rng, table, cols, last)
        rows += write_csv(folder / f"part-{f}.csv", cols.header, generated, rng, crlf)
    table = synthetic_table(PARQUET_ROWS, anomaly_rate=0.05, seed=SEED + 99)
    parquet_rows = fuzz_parquet_rows(rng, table, folder / "part-p.parquet")
    write_parquet(folder / "part-p.parquet", parquet_rows)
    return rows + parquet_rows


@pytest.fixture(scope="module")
def fuzz_run(model_dir, tmp_path_factory) -> FuzzRun:
    folder = tmp_path_factory.mktemp("fuzz_in")
    header = list(synthetic_table(1, anomaly_rate=0.0, seed=0).columns)
    rows = write_inputs(folder, model_columns(model_dir, header))
    out = tmp_path_factory.mktemp("fuzz_out") / "scores"
    args = ["score", "--model", str(model_dir), "--input", str(folder / "part-*"),
            "--output", str(out)] + SCORE_SETTINGS  # fmt: skip
    code = main(args)
    return FuzzRun(
        rows=rows,
        data_lines=count_data_lines(folder),
        flags=pd.read_parquet(out / "flags") if code == 0 else pd.DataFrame(),
        codes=pd.read_parquet(out / "codes") if code == 0 else pd.DataFrame(),
        dead=pd.read_parquet(out / "dead_letter") if code == 0 else pd.DataFrame(),
        summary=json.loads((out / "summary.json").read_text()) if code == 0 else {},
        exit_code=code,
    )


def count_data_lines(folder: Path) -> int:
    """Non-blank lines after the header in every CSV, plus every Parquet row (from the files)."""
    total = 0
    for path in folder.glob("*.csv"):
        lines = path.read_bytes().split(b"\n")[1:]
        total += sum(1 for line in lines if line.strip())
    for path in folder.glob("*.parquet"):
        total += pq.ParquetFile(path).metadata.num_rows
    return total


def _expected_raw(row: Row) -> str:
    return row.line.decode("utf-8", "backslashreplace").rstrip("\r\n")


# ------------------------------------------------------------------------------- tests


def test_the_job_succeeds_and_accounts_for_every_row(fuzz_run, capsys):
    assert fuzz_run.exit_code == 0
    good = sum(r.fate == SCORED for r in fuzz_run.rows)
    bad = len(fuzz_run.rows) - good
    assert fuzz_run.data_lines == len(fuzz_run.rows)
    s = fuzz_run.summary
    assert s["rows_read"] == fuzz_run.data_lines == s["rows_scored"] + s["rows_dead_lettered"]
    assert (s["rows_scored"], s["rows_dead_lettered"]) == (good, bad)
    assert len(fuzz_run.flags) + len(fuzz_run.dead) == fuzz_run.data_lines
    lost = fuzz_run.data_lines - len(fuzz_run.flags) - len(fuzz_run.dead)
    reasons = Counter(fuzz_run.dead["reason"])
    assert set(reasons) == {
        BAD_UTF8,
        COLUMN_COUNT,
        CSV_QUOTING,
        MISSING_ID,
        NON_FINITE,
        NOT_A_NUMBER,
    }
    with capsys.disabled():
        print(
            f"\nfuzz: {len(fuzz_run.rows)} rows fuzzed ({fuzz_run.data_lines} data lines in "
            f"{CSV_FILES} CSV + 1 Parquet), {bad} bad rows "
            f"({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}), "
            f"{good} good rows scored, records lost: {lost}"
        )


def test_every_good_row_is_scored_exactly_once(fuzz_run):
    expected = {r.key for r in fuzz_run.rows if r.fate == SCORED}
    for table in (fuzz_run.flags, fuzz_run.codes):
        ids = table["record_id"].tolist()
        assert len(ids) == len(set(ids)), "a record was scored twice"
        assert set(ids) == expected


def test_every_bad_row_is_dead_lettered_once_with_raw_input_and_reason(fuzz_run):
    dead = fuzz_run.dead
    assert not dead["record_id"].duplicated().any(), "a record was dead-lettered twice"
    by_id = dead.set_index("record_id")
    bad = [r for r in fuzz_run.rows if r.fate != SCORED]
    assert set(by_id.index) == {r.key for r in bad}
    wrong = []
    for row in bad:
        letter = by_id.loc[row.key]
        if (letter["reason"], letter["field"]) != (row.fate, row.field):
            wrong.append((row.key, row.fate, row.field, letter["reason"], letter["field"]))
        elif row.line is not None and letter["raw"] != _expected_raw(row):
            wrong.append((row.key, "raw differs", letter["raw"][:80]))
        elif row.values is not None and json.loads(letter["raw"])["id"] != row.record_id:
            wrong.append((row.key, "raw differs", letter["raw"][:80]))
    assert wrong == []
    assert dead["message"].str.len().gt(0).all()


def test_scores_are_finite_and_missing_or_unseen_values_still_score(fuzz_run):
    flags = fuzz_run.flags
    for column in ("score", "reconstruction_nll", "kl", "p_value"):
        assert np.isfinite(flags[column]).all(), column
    assert flags["p_value"].between(0, 1).all()
    scored = set(flags["record_id"])
    # the generator's legitimate oddities are among the scored rows, none dead-lettered
    oddities = [r for r in fuzz_run.rows if r.fate == SCORED and r.line is not None]
    assert any(b"nor\x00th" in r.line for r in oddities)
    assert any(len(r.line) > 131_072 for r in oddities)  # past the csv module's field limit
    assert all(r.key in scored for r in oddities)


def test_parquet_rows_meet_their_fates(fuzz_run):
    rows = [r for r in fuzz_run.rows if r.values is not None]
    fates = Counter(r.fate for r in rows)
    assert fates[SCORED] and fates[NON_FINITE] and fates[NOT_A_NUMBER] and fates[MISSING_ID]
    scored = set(fuzz_run.flags["record_id"])
    reasons = fuzz_run.dead.set_index("record_id")["reason"]
    for row in rows:
        if row.fate == SCORED:
            assert row.key in scored, row
        else:
            assert reasons[row.key] == row.fate, row


# --------------------------------------------------- model failures inside a model batch


class RaisesOnMarkedRows:
    """The bundle's real VAE behind a `predict_on_batch` that raises when a marked row is in
    the batch: a stand-in for a model that crashes on some records (the rows are real inputs,
    every other row's score comes from the real model)."""

    MARK = 12345.0

    def __init__(self, model):
        self.model = model

    def predict_on_batch(self, x):
        if (x[:, 0] == self.MARK).any():
            raise RuntimeError("marked row in batch")
        return self.model.predict_on_batch(x)


def fuzz_chunk(rng: np.random.Generator, encoding: TabularEncoding, n: int) -> EncodedChunk:
    table = synthetic_table(n, anomaly_rate=0.1, seed=int(rng.integers(1 << 30)))
    frame = table[encoding.columns].copy()
    for name in encoding.columns:  # typed as apply_kinds leaves them
        if name in [s.name for s in encoding.categorical]:
            frame[name] = frame[name].map(lambda v: None if pd.isna(v) else str(v))
        else:
            frame[name] = frame[name].astype(float)
    return EncodedChunk("fuzz.csv", list(table["id"]), [f"raw-{i}" for i in table["id"]],
                        encoding.encode(frame), table[["label"]])  # fmt: skip


def test_rows_that_break_the_model_or_score_non_finite_do_not_take_their_batch_down(
    model_dir, capsys
):
    """Seeded chunks of ragged sizes mixing rows that make the model raise with rows that score
    non-finite (gaps in tests/pipeline/test_inference.py, which tests each alone on 16 rows)."""
    bundle = load_bundle(str(model_dir))
    model = RaisesOnMarkedRows(bundle.model)
    rng = np.random.default_rng(SEED)
    injected = raised = lost = 0
    chunks = 12
    for _ in range(chunks):
        chunk = fuzz_chunk(rng, bundle.encoding, int(rng.integers(1, 200)))
        n, width = len(chunk), len(bundle.encoding.columns)
        marked = set(rng.choice(n, size=int(rng.integers(0, 1 + n // 10)), replace=False))
        others = [i for i in range(n) if i not in marked]
        infinite = set(rng.choice(others, size=min(len(others), int(rng.integers(0, 4)))))
        for i in marked:
            chunk.inputs[i, 0] = RaisesOnMarkedRows.MARK
        for i in infinite:
            chunk.inputs[i, 0], chunk.inputs[i, width] = np.inf, 1.0  # observed, infinite
        injected += len(marked) + len(infinite)
        raised += len(marked)
        scored = score_chunk(model, chunk, int(rng.integers(1, 64)))
        lost += n - len(scored.chunk) - len(scored.dead)

        dead = {d.record_id: d.reason for d in scored.dead}
        assert len(dead) == len(scored.dead)
        assert dead == {chunk.record_ids[i]: MODEL_ERROR for i in marked} | {
            chunk.record_ids[i]: NON_FINITE_SCORE for i in infinite
        }
        keep = [i for i in range(n) if i not in marked | infinite]
        assert scored.chunk.record_ids == [chunk.record_ids[i] for i in keep]
        assert scored.chunk.raw == [chunk.raw[i] for i in keep]
        assert scored.chunk.passthrough["label"].tolist() == [
            chunk.passthrough["label"].iloc[i] for i in keep
        ]
        assert np.isfinite(scored.terms["score"]).all()
        if keep:  # the survivors score as they do without the bad rows around them
            alone = score_batches(bundle.model, chunk.inputs[keep], 32)
            for key in OUTPUT_KEYS:
                np.testing.assert_allclose(scored.terms[key], alone[key], rtol=1e-4, atol=1e-4)
    assert injected > 0 and lost == 0
    with capsys.disabled():
        print(
            f"\nmodel-batch fuzz: {chunks} chunks, {injected} failing rows injected "
            f"({raised} model errors, {injected - raised} non-finite), records lost: {lost}"
        )


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
