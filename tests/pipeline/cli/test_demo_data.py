"""pipeline.cli.demo_data: the demo's synthetic table is seeded, mixed-typed, has missing values,
and its anomalies are labelled and break the relations normal rows follow."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.cli.demo_data import REGION_PRICE, REGIONS, synthetic_table

COLUMNS = [
    "id", "load", "temperature", "power", "price", "latency_ms", "region", "tier",
    "is_weekend", "label",
]  # fmt: skip


def test_columns_ids_and_seeding():
    table = synthetic_table(500, anomaly_rate=0.05, seed=3)
    assert list(table.columns) == COLUMNS and len(table) == 500
    assert table["id"].is_unique and table["id"].iloc[0] == "r3-0000000"
    pd.testing.assert_frame_equal(table, synthetic_table(500, anomaly_rate=0.05, seed=3))
    other = synthetic_table(500, anomaly_rate=0.05, seed=4)
    assert not np.allclose(table["load"], other["load"])


def test_values_are_in_their_domains():
    table = synthetic_table(2000, anomaly_rate=0.0, seed=1)
    assert set(table["region"].dropna()) <= set(REGIONS)
    assert set(table["tier"].dropna()) == {"basic", "pro"}
    assert set(table["is_weekend"]) == {0, 1}
    assert (table["load"] > 0).all() and (table["latency_ms"] > 0).all()


def test_about_two_percent_missing_in_the_knocked_out_columns_only():
    table = synthetic_table(5000, anomaly_rate=0.0, seed=2)
    for column in ("temperature", "price", "region", "tier"):
        assert 0.01 < table[column].isna().mean() < 0.03, column
    for column in ("id", "load", "power", "latency_ms", "is_weekend", "label"):
        assert table[column].notna().all(), column


def test_no_anomalies_at_rate_zero_and_about_the_rate_otherwise():
    assert synthetic_table(1000, anomaly_rate=0.0, seed=5)["label"].sum() == 0
    rate = synthetic_table(5000, anomaly_rate=0.1, seed=5)["label"].mean()
    assert 0.08 < rate < 0.12


def _relation_errors(table: pd.DataFrame) -> pd.DataFrame:
    """How far each row is from the normal relations, in noise standard deviations."""
    base_price = table["region"].map(REGION_PRICE).astype(float)
    return pd.DataFrame(
        {
            "temperature": (table["temperature"].astype(float) - 20 - 0.5 * table["load"]) / 2,
            "power": (table["power"] - 3 * table["load"]) / 5,
            "price": (table["price"].astype(float) / base_price - 10) / 0.5,
        }
    ).abs()


def test_normal_rows_follow_the_relations_and_anomalies_break_them():
    table = synthetic_table(4000, anomaly_rate=0.2, seed=7)
    errors = _relation_errors(table)
    normal, anomalous = table["label"] == 0, table["label"] == 1
    # Normal rows: within 5 noise sigmas on every relation (NaN where a value is missing).
    assert (errors[normal].fillna(0) < 5).all().all()
    # An anomaly breaks one relation, or has a latency 20-60x its usual (log-normal) value.
    broken = (errors[anomalous].fillna(0) > 5).any(axis=1)
    slow = table.loc[anomalous, "latency_ms"] > np.exp(3.0 + 0.6 * 3)
    assert (broken | slow).mean() > 0.9
