"""The realistic demo table: its columns, seeded, and the documented distributions."""

from __future__ import annotations

import pandas.testing as pdt

from pipeline.cli.demo_realistic import CHANNELS, realistic_table

COLUMNS = [
    "id", "amount", "reading", "pair_a", "pair_b", "count", "channel", "verified", "ts",
    "note", "user",
]  # fmt: skip


def test_columns_rows_and_unique_ids():
    table = realistic_table(500, seed=3)
    assert list(table.columns) == COLUMNS
    assert len(table) == 500
    assert table["id"].is_unique
    assert table["id"].iloc[0] == "s3-0000000"


def test_the_same_seed_gives_the_same_table_and_another_seed_another():
    pdt.assert_frame_equal(realistic_table(200, seed=1), realistic_table(200, seed=1))
    assert not realistic_table(200, seed=1)["amount"].equals(realistic_table(200, seed=2)["amount"])


def test_values_have_the_documented_form():
    table = realistic_table(4000, seed=0, start="2025-03-01")
    assert set(table["channel"]) <= set(CHANNELS)
    assert set(table["verified"]) == {"true", "false"}
    assert (table["amount"] > 0).all()
    assert table["ts"].is_monotonic_increasing and table["ts"].iloc[0] >= "2025-03-01"
    assert 0.6 < table["pair_a"].corr(table["pair_b"]) < 0.99  # the correlated pair
    assert abs((table["verified"] == "true").mean() - 0.7) < 0.03
