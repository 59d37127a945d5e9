"""Boolean columns come back from an archive as they were spelled, not as the model's true/false."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.archive.spellings import (
    SUFFIX,
    restore_spellings,
    spelling_columns,
    type_for_archive,
    with_spellings,
)
from pipeline.core.records import NUMERIC, RecordChunk
from pipeline.features.column_types import BOOLEAN

KINDS = {"x": NUMERIC, "b": BOOLEAN}


def _chunk(values: list) -> RecordChunk:
    frame = pd.DataFrame({"x": ["1"] * len(values), "b": values}, dtype=object)
    return RecordChunk("f.csv", [f"r{i}" for i in range(len(values))], ["raw"] * len(values), frame)


def test_only_spellings_other_than_the_canonical_one_travel():
    chunk = with_spellings(_chunk(["yes", "true", None, "N", "false", "1"]), KINDS)
    assert chunk.frame["b" + SUFFIX].tolist() == ["yes", None, None, "N", None, "1"]
    assert spelling_columns(KINDS) == ("b" + SUFFIX,)


def test_typing_for_the_archive_keeps_the_canonical_value_and_the_spelling():
    typed, dead = type_for_archive(_chunk(["Yes", "no", None]), KINDS, ())
    assert dead == []
    assert typed.frame["b"].tolist() == ["true", "false", None]
    assert typed.frame["b" + SUFFIX].tolist() == ["Yes", "no", None]


def test_restoring_puts_the_spellings_back_and_drops_the_side_column():
    arrays = {
        "b": pa.array(["true", "false", None, "true"]),
        "b" + SUFFIX: pa.array(["yes", None, None, "T"]),
    }
    restore_spellings(arrays, ["b"])
    assert list(arrays) == ["b"] and arrays["b"].to_pylist() == ["yes", "false", None, "T"]


@pytest.mark.parametrize("tolerance", [0.0, 0.01])
def test_a_compressed_table_restores_every_boolean_spelling(tolerance):
    import vaepipe

    rng = np.random.default_rng(0)
    n = 300
    spelled = {True: ["yes", "Yes", "true", "1"], False: ["no", "No", "false", "0"]}
    truth = rng.random(n) < 0.5
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "x": rng.normal(size=n),
            "b": [spelled[bool(t)][i % 4] if i % 17 else None for i, t in enumerate(truth)],
            "c": rng.choice(["T", "F"], n),
        }
    )
    det = vaepipe.fit(frame, id_column="id", **{"train.epochs": 1})
    kinds = det._bundle.encoding.kinds
    assert kinds["b"] == BOOLEAN and kinds["c"] == BOOLEAN
    back = det.decompress(det.compress(frame, relative_tolerance=tolerance))
    assert list(back.columns) == list(frame.columns)
    assert back["b"].tolist() == frame["b"].tolist()
    assert back["c"].tolist() == frame["c"].tolist()
