"""The bound check names every kind of broken value (and passes exact ones)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs.schema import CompressConfig
from pipeline.archive.verify import violations
from pipeline.features.tabular_encoding import CategoricalSpec, NumericSpec, TabularEncoding

ENCODING = TabularEncoding(
    numeric=(NumericSpec("x", 0.0, 1.0), NumericSpec("n", 0.0, 1.0)),
    categorical=(CategoricalSpec("c", ("a", "b")),),
)
ORIGINAL = pd.DataFrame(
    {"x": [1.5, 100.0, np.nan, 0.0], "n": [1.0, 2.0, 3.0, 4.0],
     "c": pd.Series(["a", None, "zz", "b"], dtype=object)}
)  # fmt: skip
IDS = ["r1", "r2", "r3", "r4"]
ONE_PERCENT = CompressConfig(relative_tolerance=0.01)


def test_values_within_the_bound_pass():
    decoded = ORIGINAL.assign(x=[1.5149, 99.0, np.nan, 0.0])
    assert violations(ORIGINAL, decoded, ENCODING, ONE_PERCENT, IDS) == []


def test_each_broken_value_is_named():
    decoded = ORIGINAL.assign(
        x=[1.53, 100.0, 5.0, 1e-300],  # off by 2%; a missing value filled; 0 must stay 0
        n=[1.0, 2.0, 3.0, 4.004],  # within 1%, but an integer column decodes to integers
        c=pd.Series(["a", "a", "zz", None], dtype=object),  # missing filled; value lost
    )
    lines = violations(ORIGINAL, decoded, ENCODING, ONE_PERCENT, IDS)
    named = {(line.split("'")[1], line.split("'")[3]) for line in lines}
    assert named == {("r1", "x"), ("r3", "x"), ("r4", "x"), ("r4", "n"), ("r2", "c"), ("r4", "c")}


def test_lossless_means_the_same_bits():
    original = pd.DataFrame({"x": [0.0, 0.1], "n": [1.0, 2.0], "c": ["a", "b"]})
    decoded = original.assign(x=[-0.0, np.nextafter(0.1, 1)])
    lines = violations(original, decoded, ENCODING, CompressConfig(), ["r1", "r2"])
    assert len(lines) == 2 and all("column 'x'" in line for line in lines)
