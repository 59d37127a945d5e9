"""Tolerance grids: every value they accept decodes within its bound, closed-form checks of
the bins, and what they refuse (escaped by the coder) is what cannot be hit."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.archive.quantize import (
    Grid,
    Tolerance,
    UnitGrid,
    choose_grid,
    decimal_digits,
    grid_from_dict,
    unit_grid,
    within,
)


def heavy_tailed(rng, n: int) -> np.ndarray:
    """Zeros, negatives, Cauchy tails, tiny and huge magnitudes, short decimals."""
    parts = [
        np.zeros(n // 8),
        rng.standard_cauchy(n // 8) * 1e3,
        -rng.lognormal(0, 8, n // 8),
        rng.lognormal(0, 8, n // 8),
        rng.uniform(-1e-300, 1e-300, n // 8),
        rng.choice([1e300, -1e300, 1.7e308, 5e-324, -5e-324], n // 8),
        np.round(rng.normal(0, 10, n // 8), 2),
        rng.integers(-(2**40), 2**40, n // 8).astype(np.float64),
    ]
    return rng.permutation(np.concatenate(parts))


TOLERANCES = [
    Tolerance(0.0, 0.0),
    Tolerance(0.0, 1e-3),
    Tolerance(0.0, 1e-2),
    Tolerance(0.0, 0.1),
    Tolerance(0.5, 0.0),
    Tolerance(1e-3, 1e-2),
    Tolerance(7.0, 0.05),
]


@pytest.mark.parametrize("tolerance", TOLERANCES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accepted_values_decode_within_the_bound(tolerance, seed):
    x = heavy_tailed(np.random.default_rng(seed), 4000)
    grid = choose_grid(x, tolerance)
    k, ok = grid.representable(x, tolerance)
    assert within(x[ok], grid.value(k[ok]), tolerance).all()
    if not tolerance.lossless:
        # A bound wider than nothing catches nearly everything (escapes are expensive); an
        # absolute bound alone cannot index 1e300 in steps of 1: those are escaped.
        ordinary = np.abs(x) < 1e15 if tolerance.relative == 0 else np.ones(len(x), bool)
        assert ok[ordinary].mean() > 0.99


@pytest.mark.parametrize("tolerance", TOLERANCES)
def test_a_grid_survives_its_header(tolerance):
    x = np.round(np.random.default_rng(3).normal(0, 100, 500), 2)
    grid = choose_grid(x, tolerance)
    again = grid_from_dict(grid.to_dict())
    k = grid.index(x)
    assert np.array_equal(again.value(k), grid.value(k), equal_nan=True)
    assert np.array_equal(again.index(x), k)


def test_lossless_decimals_decode_to_the_same_bits_as_their_text():
    text = ["0.31", "1.00", "0.07", "-12.5", "3", "0.1", "0.2"]
    x = np.array([float(t) for t in text])
    grid = choose_grid(x, Tolerance())
    assert isinstance(grid, UnitGrid) and grid.decimals == 2
    k, ok = grid.representable(x, Tolerance())
    assert ok.all()
    assert np.array_equal(grid.value(k).view(np.int64), x.view(np.int64))


def test_lossless_refuses_what_no_short_decimal_writes():
    x = np.array([np.pi, np.e, -0.0, 0.1 + 0.2])
    grid = choose_grid(x, Tolerance())
    _, ok = grid.representable(x, Tolerance())
    assert not ok.any()  # -0.0 would come back as 0.0: escaped to its raw bits


def test_integer_columns_decode_to_integers_under_a_relative_bound():
    x = np.random.default_rng(4).integers(0, 10**9, 3000).astype(np.float64)
    tolerance = Tolerance(0.0, 0.01)
    grid = choose_grid(x, tolerance)
    assert grid.integer
    k, ok = grid.representable(x, tolerance)
    assert ok.all()
    decoded = grid.value(k)
    assert np.array_equal(decoded, np.rint(decoded))
    assert within(x, decoded, tolerance).all()


@pytest.mark.parametrize("absolute,relative", [(0.0, 0.01), (2.0, 0.03), (0.0, 0.3), (10.0, 0)])
def test_every_integer_lies_within_the_bound_of_its_bin(absolute, relative):
    """Closed form over all integers 0..50,000: the table's bins hold exactly the units
    within max(absolute, relative * x) of their value, and bins grow with x."""
    x = np.arange(0, 50_001, dtype=np.float64)
    tolerance = Tolerance(absolute, relative)
    grid = unit_grid(x, 0, tolerance)
    k = grid.index(x)
    decoded = grid.value(k)
    assert within(x, decoded, tolerance).all()
    assert np.all(np.diff(k) >= 0)  # monotone: a bin is one run of integers
    if relative:
        bins = len(np.unique(k))
        assert bins < 0.2 * len(x)  # the relative bound is used, not wasted


def test_a_relative_bound_alone_on_generic_floats_uses_a_geometric_grid():
    x = np.random.default_rng(5).lognormal(0, 3, 2000)
    tolerance = Tolerance(0.0, 0.01)
    grid = choose_grid(x, tolerance)
    assert isinstance(grid, Grid) and grid.log_step > 0
    k, ok = grid.representable(x, tolerance)
    assert ok.mean() > 0.99
    # about log(max/min) / (2 * 0.01) bins in all, not one per value
    assert len(np.unique(k[ok])) < 0.5 * len(x)


def test_decimal_digits():
    assert decimal_digits(np.array([1.0, 2.0, -3.0])) == 0
    assert decimal_digits(np.array([0.31, 0.5, 1.0])) == 2
    assert decimal_digits(np.array([1.125, 0.5])) == 3
    assert decimal_digits(np.array([0.1 + 0.2, 1 / 3])) == -1  # 17 and 16 decimals
