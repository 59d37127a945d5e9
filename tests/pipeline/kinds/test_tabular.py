"""The tabular kind: the columns a model needs at scoring are the modelled ones only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.core.errors import BundleError
from pipeline.features.tabular_encoding import CategoricalSpec, NumericSpec, TabularEncoding
from pipeline.kinds.tabular import check_columns, curated_decisions


def _bundle() -> SimpleNamespace:
    encoding = TabularEncoding(
        (NumericSpec("x", 0.0, 1.0),), (CategoricalSpec("b", ("false", "true"), boolean=True),)
    )
    return SimpleNamespace(encoding=encoding, directory="model/")


def test_left_out_columns_are_not_required_at_scoring():
    # A column left out at training (all missing, a timestamp, an id) is absent: fine.
    check_columns(_bundle(), ["x", "b"], "batch.csv")
    with pytest.raises(BundleError, match=r"input batch.csv .* missing columns \['b'\]"):
        check_columns(_bundle(), ["x", "gone"], "batch.csv")


def test_a_curated_schema_models_every_feature():
    decisions = curated_decisions({"x": "numeric", "b": "boolean"})
    assert {d["decision"] for d in decisions.values()} == {"modelled"}
    assert decisions["b"]["kind"] == "boolean"
