"""Column kinds: profiling (a Beam CombineFn), deciding kinds, converting chunks to them."""

from __future__ import annotations

import re

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from configs.schema import DataConfig
from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NON_FINITE, NOT_A_NUMBER, NUMERIC
from pipeline.features.column_types import ColumnProfile, ProfileColumns, apply_kinds, decide_kinds


def profile(chunk_of, columns: dict, cap: int = 2) -> dict[str, ColumnProfile]:
    fn = ProfileColumns(cap)
    return fn.extract_output(fn.add_input(fn.create_accumulator(), chunk_of(columns)))


# ---------------------------------------------------------------------------- profiling


def test_profile_counts(chunk_of):
    prof = profile(chunk_of, {"v": ["1", "2.5", "x", None, "3"]}, cap=10)["v"]
    assert prof.present == 4
    assert prof.non_numeric == 1
    assert prof.non_integer == 1
    assert prof.distinct == {"1", "2.5", "x", "3"}


def test_profile_treats_nan_spellings_and_blanks_as_missing(chunk_of):
    prof = profile(chunk_of, {"v": ["1.5", "NA", "nan", "", "  ", "null", "2"]}, cap=10)["v"]
    assert prof.present == 2
    assert prof.non_numeric == 0


def _kinds_of_profiles(profiles: dict) -> list:
    return [decide_kinds(profiles, DataConfig(), 2)]


def test_profile_columns_combines_across_chunks_in_beam(chunk_of):
    """Each chunk alone misleads (one has only integers, one is empty); all together do not."""
    chunks = [
        chunk_of({"a": ["1", "2", "1"], "b": ["x", "y", None], "c": [None, None, None]}),
        chunk_of({"a": ["1.5", "2", "3"], "b": ["z", None, None], "c": ["0", "1", "1"]}),
    ]
    with BeamTestPipeline() as p:
        kinds = (
            p
            | beam.Create(chunks)
            | beam.CombineGlobally(ProfileColumns(2))
            | beam.FlatMap(_kinds_of_profiles)
        )
        assert_that(kinds, equal_to([{"a": NUMERIC, "b": CATEGORICAL, "c": INT_CATEGORICAL}]))


def test_merge_accumulators_adds_counts_and_caps_distinct(chunk_of):
    fn = ProfileColumns(2)
    first = fn.add_input(fn.create_accumulator(), chunk_of({"v": ["1", "2", None]}))
    second = fn.add_input(fn.create_accumulator(), chunk_of({"v": ["3", "4", "a"]}))
    merged = fn.merge_accumulators([first, second])["v"]
    assert merged.present == 5
    assert merged.non_numeric == 1
    assert len(merged.distinct) == 3  # capped at max_distinct + 1: "more than 2" is all we need


# ------------------------------------------------------------------------- decide_kinds


def _profiles(**kw) -> dict:
    return {name: ColumnProfile(*args) for name, args in kw.items()}


def test_decide_kinds_from_profiles():
    profiles = _profiles(
        num=(10, 0, 4, {"1.5", "2", "3"}),
        cat=(10, 3, 0, {"a", "b"}),
        flag=(10, 0, 0, {"0", "1"}),
        count=(10, 0, 0, {"0", "1", "2"}),
        empty=(0, 0, 0, set()),
    )
    kinds = decide_kinds(profiles, DataConfig(), int_categorical_max=2)
    assert kinds == {
        "cat": CATEGORICAL,
        "count": NUMERIC,  # three distinct integers > int_categorical_max
        "flag": INT_CATEGORICAL,  # (empty, never observed, is left out: see below)
        "num": NUMERIC,
    }
    assert list(kinds) == sorted(kinds)


def test_int_categorical_threshold_is_configurable():
    profiles = _profiles(count=(10, 0, 0, {"0", "1", "2"}))
    assert decide_kinds(profiles, DataConfig(), 3) == {"count": INT_CATEGORICAL}
    assert decide_kinds(profiles, DataConfig(), 0) == {"count": NUMERIC}


def test_forced_kinds_win_and_excluded_columns_are_dropped():
    profiles = _profiles(
        code=(10, 0, 0, {"100", "200", "300", "400"}),
        text_num=(10, 2, 0, {"1", "x"}),
        label=(10, 0, 0, {"0", "1"}),
    )
    config = DataConfig(
        categorical_columns=("code",), numeric_columns=("text_num",), exclude_columns=("label",)
    )
    assert decide_kinds(profiles, config, 2) == {"code": CATEGORICAL, "text_num": NUMERIC}


def test_forced_column_missing_from_input_is_an_error():
    profiles = _profiles(a=(1, 0, 0, {"1"}))
    config = DataConfig(categorical_columns=("zip",), numeric_columns=("price",))
    with pytest.raises(ValueError, match=r"not in the input: \['price', 'zip'\]"):
        decide_kinds(profiles, config, 2)


# -------------------------------------------------------------------------- apply_kinds


KINDS = {"n": NUMERIC, "c": CATEGORICAL, "i": INT_CATEGORICAL}


def test_numeric_values_become_float64(chunk_of):
    typed, dead = apply_kinds(chunk_of({"n": ["1.5", "-2", " 3 ", "1e3"]}), {"n": NUMERIC})
    assert dead == []
    assert typed.frame["n"].dtype == np.float64
    assert typed.frame["n"].tolist() == [1.5, -2.0, 3.0, 1000.0]


@pytest.mark.parametrize("token", [None, "", "  ", "nan", "NaN", "NA", "N/A", "null", "None"])
def test_missing_spellings_are_missing_not_dead_letters(chunk_of, token):
    typed, dead = apply_kinds(chunk_of({"n": ["1", token]}), {"n": NUMERIC})
    assert dead == []
    assert len(typed) == 2
    assert typed.frame["n"].iloc[0] == 1.0 and np.isnan(typed.frame["n"].iloc[1])


def test_text_in_numeric_column_is_a_not_a_number_dead_letter(chunk_of):
    chunk = chunk_of({"n": ["1", "abc", "2"], "c": ["a", "b", "c"]})
    typed, dead = apply_kinds(chunk, {"n": NUMERIC, "c": CATEGORICAL})
    assert typed.record_ids == [chunk.record_ids[0], chunk.record_ids[2]]
    assert typed.raw == [chunk.raw[0], chunk.raw[2]]
    assert typed.frame["c"].tolist() == ["a", "c"]
    [letter] = dead
    assert (letter.reason, letter.field, letter.stage) == (NOT_A_NUMBER, "n", "type")
    assert letter.record_id == chunk.record_ids[1] and letter.raw == chunk.raw[1]


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400", "-1e400"])
def test_infinite_or_out_of_range_numbers_are_non_finite(chunk_of, value):
    typed, dead = apply_kinds(chunk_of({"n": ["1", value]}), {"n": NUMERIC})
    assert len(typed) == 1
    [letter] = dead
    assert (letter.reason, letter.field) == (NON_FINITE, "n")


def test_a_row_with_two_bad_fields_gives_exactly_one_dead_letter(chunk_of):
    chunk = chunk_of({"a": ["x", "1", "2"], "b": ["inf", "y", "3"]})
    typed, dead = apply_kinds(chunk, {"a": NUMERIC, "b": NUMERIC})
    assert sorted(d.record_id for d in dead) == sorted(chunk.record_ids[:2])
    assert typed.record_ids == [chunk.record_ids[2]]
    first = next(d for d in dead if d.record_id == chunk.record_ids[0])
    assert first.field == "a"  # reported at the first bad column


def test_row_accounting_good_rows_all_kept(chunk_of):
    rng = np.random.default_rng(0)
    values = rng.normal(size=200).astype(str).astype(object)
    bad = rng.choice(200, size=30, replace=False)
    values[bad[:10]] = "oops"
    values[bad[10:20]] = "inf"
    values[bad[20:]] = None  # missing: kept
    chunk = chunk_of({"n": list(values), "c": [str(v) for v in range(200)]})
    typed, dead = apply_kinds(chunk, {"n": NUMERIC, "c": CATEGORICAL})
    assert len(typed) + len(dead) == len(chunk)
    assert len(dead) == 20
    assert set(typed.record_ids).isdisjoint(d.record_id for d in dead)
    good = [chunk.record_ids[i] for i in range(200) if i not in set(bad[:20])]
    assert typed.record_ids == good


def test_all_rows_bad_gives_no_chunk(chunk_of):
    typed, dead = apply_kinds(chunk_of({"n": ["x", "y"]}), {"n": NUMERIC})
    assert typed is None and len(dead) == 2


def test_categories_are_text_and_int_categories_canonical(chunk_of):
    chunk = chunk_of(
        {"n": ["1", "2", "3", "4"], "c": ["a", 7, None, "NA"], "i": ["1", "1.0", None, "x"]}
    )
    typed, dead = apply_kinds(chunk, KINDS)
    assert dead == []
    assert typed.frame["c"].tolist() == ["a", "7", None, "NA"]  # NA is a category here
    # "1.0" is the integer 1; a non-integer spelling stays as written (it will be OOV).
    assert typed.frame["i"].tolist() == ["1", "1", None, "x"]


def test_output_columns_are_kinds_then_excluded(chunk_of):
    chunk = chunk_of({"label": ["p", "q"], "c": ["a", "b"], "n": ["1", "2"], "junk": ["j", "k"]})
    typed, _ = apply_kinds(chunk, {"c": CATEGORICAL, "n": NUMERIC}, exclude=("label", "gone"))
    assert list(typed.frame.columns) == ["c", "n", "label"]
    assert typed.frame["label"].tolist() == ["p", "q"]


def test_modelled_column_absent_from_input_is_all_missing(chunk_of):
    typed, dead = apply_kinds(chunk_of({"n": ["1", "2"]}), {"n": NUMERIC, "m": NUMERIC})
    assert dead == []
    assert np.isnan(typed.frame["m"].to_numpy()).all()


# ------------------------------------------- booleans, timestamps, identifiers, empty columns


def _decisions(chunk_of, columns: dict, **schema) -> dict:
    from configs.schema import SchemaConfig
    from pipeline.features.column_types import column_decisions

    profiles = profile(chunk_of, columns)
    return column_decisions(profiles, DataConfig(), 2, SchemaConfig(**schema))


@pytest.mark.parametrize(
    ("spellings", "expected"),
    [
        (["true", "false"], ["true", "false"]),
        (["True", "False"], ["true", "false"]),
        (["TRUE", "FALSE"], ["true", "false"]),
        (["t", "f"], ["true", "false"]),
        (["yes", "No"], ["true", "false"]),
        (["Y", "n"], ["true", "false"]),
        (["true", "0"], ["true", "false"]),
        ([True, False], ["true", "false"]),  # Python bools, as a Parquet bool column gives them
        ([np.bool_(True), np.bool_(False)], ["true", "false"]),
    ],
)
def test_boolean_spellings_are_one_boolean_column(chunk_of, spellings, expected):
    from pipeline.features.column_types import BOOLEAN

    values = spellings * 5 + [None]
    assert _decisions(chunk_of, {"b": values})["b"]["kind"] == BOOLEAN
    typed, dead = apply_kinds(chunk_of({"b": values}), {"b": BOOLEAN})
    assert dead == [] and typed.frame["b"].tolist() == expected * 5 + [None]


def test_a_boolean_column_reads_every_spelling_and_keeps_others_as_written(chunk_of):
    from pipeline.features.column_types import BOOLEAN

    values = ["True", "false", "1", "0", "1.0", " yes ", "F", True, "maybe", None]
    typed, _ = apply_kinds(chunk_of({"b": values}), {"b": BOOLEAN})
    expected = ["true", "false", "true", "false", "true", "true", "false", "true", "maybe", None]
    assert typed.frame["b"].tolist() == expected  # "maybe": an unseen category (OOV)


def test_integer_zero_one_columns_stay_integer_categories(chunk_of):
    """Old bundles model 0/1 columns as integer categories: new ones too (same scores)."""
    assert _decisions(chunk_of, {"i": ["0", "1", "1", "0"]})["i"]["kind"] == INT_CATEGORICAL
    assert _decisions(chunk_of, {"i": [0, 1, 1, None]})["i"]["kind"] == INT_CATEGORICAL


@pytest.mark.parametrize(
    "values",
    [
        [
            "2024-01-01T10:00:00",
            "2024-01-02 11:30:05Z",
            "2024-02-29",
            "2024-03-01T00:00:00.25+02:00",
        ],
        [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02")],  # Parquet datetime64
    ],
)
def test_timestamps_are_left_out_with_a_reason(chunk_of, values):
    decision = _decisions(chunk_of, {"ts": values + [None]})["ts"]
    assert decision["kind"] == "timestamp" and decision["decision"] == "left out"
    assert "after the training range" in decision["why"]


def test_text_that_is_not_a_real_date_is_not_a_timestamp(chunk_of):
    assert _decisions(chunk_of, {"d": ["2024-13-45", "2024-01-01"]})["d"]["kind"] == CATEGORICAL


def test_near_unique_text_is_an_identifier_and_repeated_text_a_category(chunk_of):
    n = 3000
    unique = [f"note {i}" for i in range(n)]
    users = [f"u{i % 1500}" for i in range(n)]  # each twice: 50% distinct
    regions = [f"r{i % 1200}" for i in range(n)]  # 40%; the 20% share rule leaves it out
    cats = [f"c{i % 4}" for i in range(n)]
    decisions = _decisions(
        chunk_of, {"note": unique, "user": users, "cat": cats}, max_vocabulary=1000
    )
    assert decisions["note"]["kind"] == decisions["user"]["kind"] == "identifier"
    # 3,000 distinct values: estimated from a 2,048-hash sketch (about 2% error)
    assert re.search(
        r"about (2,9\d\d|3,0\d\d) distinct values in 3,000 rows", decisions["note"]["why"]
    )
    assert decisions["cat"] == {"kind": CATEGORICAL, "decision": "modelled", "why": "text values"}
    # No more distinct values than max_vocabulary: still a category (the vocabulary holds it).
    kept = _decisions(chunk_of, {"r": regions}, max_vocabulary=2000)["r"]
    assert kept["kind"] == CATEGORICAL
    # A larger share allowed: modelled.
    loose = _decisions(chunk_of, {"user": users}, identifier_distinct_share=0.6)["user"]
    assert loose["kind"] == CATEGORICAL


def test_numbers_are_never_identifiers(chunk_of):
    values = [str(i * 1.5) for i in range(3000)]
    assert _decisions(chunk_of, {"x": values}, max_vocabulary=10)["x"]["kind"] == NUMERIC


def test_an_all_missing_column_is_left_out_even_when_forced(chunk_of):
    from configs.schema import SchemaConfig
    from pipeline.features.column_types import column_decisions

    profiles = profile(chunk_of, {"gone": [None, "", "NA"], "x": ["1.5", "2", "3"]})
    config = DataConfig(numeric_columns=("gone",))
    decisions = column_decisions(profiles, config, 2, SchemaConfig())
    assert decisions["gone"]["decision"] == "left out" and decisions["gone"]["kind"] == "empty"
    assert decide_kinds(profiles, config, 2) == {"x": NUMERIC}


def test_distinct_sketch_is_exact_when_small_and_close_when_large(chunk_of):
    from pipeline.features.column_types import SKETCH_SIZE

    fn = ProfileColumns(2)
    accs = []
    for part in range(4):  # 4 chunks of 10,000 values; 20,000 distinct in all (half repeat)
        values = [f"id{(part * 10_000 + i) % 20_000}" for i in range(10_000)]
        accs.append(fn.add_input(fn.create_accumulator(), chunk_of({"v": values})))
    merged = fn.merge_accumulators(accs)["v"]
    assert abs(merged.distinct_estimate - 20_000) < 0.08 * 20_000
    assert len(merged.sketch) == SKETCH_SIZE
    small = profile(chunk_of, {"v": ["a", "b", "a", "c"]})["v"]
    assert small.distinct_estimate == 3


def test_typing_from_the_readers_arrow_text_equals_typing_from_the_frame(tmp_path):
    """The CSV fast path hands typing its Arrow strings; every spelling types as from pandas."""
    from dataclasses import replace

    from pipeline.sources.csvfile import csv_chunks

    numbers = ["1.5", "", " 3 ", "nan", "1e400", "abc", "-2", "NA", "7", "1e3"]
    ints = ["1", "1.0", "", "x", "2.5", "-3", "4", "0", "10", "1"]
    texts = ["a", "", "b", "NA", "7", "c", "a", "d", "e", " f"]
    lines = ["n,i,c,keep"] + [
        f"{n},{i},{c},{k}" for n, i, c, k in zip(numbers, ints, texts, range(10), strict=True)
    ]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    [(chunk, dead)] = list(csv_chunks(str(path), DataConfig()))
    assert dead == [] and chunk.text is not None  # the Arrow fast path was taken
    kinds = {"n": NUMERIC, "i": INT_CATEGORICAL, "c": CATEGORICAL}
    typed, dead_text = apply_kinds(chunk, kinds, ("keep",))
    plain, dead_plain = apply_kinds(replace(chunk, text=None), kinds, ("keep",))
    pd.testing.assert_frame_equal(typed.frame, plain.frame)
    assert typed.record_ids == plain.record_ids
    assert [(d.record_id, d.reason, d.field) for d in dead_text] == [
        (d.record_id, d.reason, d.field) for d in dead_plain
    ]
    assert {d.reason for d in dead_text} == {NOT_A_NUMBER, NON_FINITE}
    assert typed.frame["i"].tolist()[:4] == ["1", "1", None, "x"]
