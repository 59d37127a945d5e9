"""Tolerance grids: which values a numeric column may decode to, and their integer indices.

A grid has two zones. Near zero (|x| <= log_start) it is uniform with step `step`: k * step,
or k / 10**decimals when the column's values are decimals with that many digits (then the
grid hits them exactly: 31 / 100 is the double nearest 0.31, as the CSV's text was). Beyond,
it is geometric: consecutive values differ by the ratio exp(log_step), chosen so that every x
in a bin is within relative_tolerance of the bin's value. A relative bound needs bins that
grow with |x|; an absolute one, or the values' own decimal step, sets the uniform zone.
Integer columns get integer steps and values rounded to integers, with the geometric zone
starting where rounding cannot break the bound.

Indices are integers; `coordinate` is their continuous version (the index as a smooth
function of x), through which the decoder's Gaussian is mapped (see `coder`). A value the grid
cannot hit within its bound (`representable` false: tolerance 0 and a float that is no short
decimal, -0.0, an index beyond 2**61) is coded as its raw float64 bits instead.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """|x' - x| <= max(absolute, relative * |x|); both 0: bit-exact."""

    absolute: float = 0.0
    relative: float = 0.0

    @property
    def lossless(self) -> bool:
        return self.absolute == 0.0 and self.relative == 0.0


def column_tolerance(settings, column: str) -> Tolerance:
    """One numeric column's bound under the config's `compress` section (`CompressConfig`)."""
    return Tolerance(*settings.bound(column))


MAX_INDEX = 2.0**61  # indices stay far inside int64 (differences of two must fit too)
MAX_DECIMALS = 15
# A decimal step is used when this share of a column's values are decimals of that many
# digits; the others are escaped.
DECIMAL_SHARE = 0.999
# Geometric bins are made this much narrower than the bound allows: the bound must survive
# exp/log rounding (a value failing it would cost an escape, never a broken bound).
SAFETY = 1.0 - 1e-9
MAX_TABLE = 200_000  # bins of a unit grid's table; a longer one falls back to `Grid`


@dataclass(frozen=True)
class Grid:
    """The values one numeric column of one block may decode to (see the module docstring).

    step 0 means no grid: every value is coded raw.
    """

    step: float
    decimals: int  # >= 0: k / 10**decimals; -1: k * step
    log_start: float  # inf: uniform only
    log_step: float
    integer: bool

    @property
    def uniform_top(self) -> float:
        """The index where the geometric zone starts (log_start / step, an integer)."""
        return self.log_start / self.step if math.isfinite(self.log_start) else math.inf

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v)
                for k, v in asdict(self).items()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        start = math.inf if data["log_start"] is None else float(data["log_start"])
        return cls(
            float(data["step"]), int(data["decimals"]), start, float(data["log_step"]),
            bool(data["integer"]),
        )  # fmt: skip

    # ------------------------------------------------------------------ x <-> index
    def coordinate(self, x: np.ndarray) -> np.ndarray:
        """The continuous index of x (float64; round it for the index of x's bin)."""
        x = np.asarray(x, dtype=np.float64)
        linear = x / self.step
        if not math.isfinite(self.log_start):
            return linear
        magnitude = np.abs(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            # log(|x|) - log(start), not log(|x| / start): that ratio overflows at 1e308 / 1e-300
            octaves = np.log(magnitude) - math.log(self.log_start)
            geometric = self.uniform_top + octaves / self.log_step
        return np.where(magnitude <= self.log_start, linear, np.sign(x) * geometric)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Integer index of each x's bin (int64; clipped to +-MAX_INDEX)."""
        k = np.rint(np.clip(self.coordinate(x), -MAX_INDEX, MAX_INDEX))
        return np.nan_to_num(k, nan=0.0).astype(np.int64)

    def value(self, k: np.ndarray) -> np.ndarray:
        """The value of index k (float64; integers for integer columns)."""
        k = np.asarray(k, dtype=np.int64)
        if self.decimals >= 0:
            linear = k.astype(np.float64) / 10.0**self.decimals  # correctly rounded decimals
        else:
            linear = k.astype(np.float64) * self.step
        if math.isfinite(self.log_start):
            top = self.uniform_top
            beyond = np.maximum(np.abs(k).astype(np.float64) - top, 0.0)
            with np.errstate(over="ignore"):
                magnitude = np.exp(math.log(self.log_start) + beyond * self.log_step)
                geometric = np.sign(k) * magnitude
            linear = np.where(np.abs(k) <= top, linear, geometric)
        return np.rint(linear) if self.integer else linear

    def representable(self, x: np.ndarray, tolerance: Tolerance) -> tuple[np.ndarray, np.ndarray]:
        """(indices, whether each x's index decodes within its bound)."""
        if self.step == 0:
            return np.zeros(len(x), np.int64), np.zeros(len(x), bool)
        k = self.index(x)
        ok = within(x, self.value(k), tolerance) & (np.abs(k) < MAX_INDEX)
        return k, ok


@dataclass(frozen=True)
class UnitGrid:
    """A grid for columns of integers or short decimals, in units of 10**-decimals.

    Near zero every `step`-th unit (an odd number: integers within (step - 1) / 2 <= the
    absolute bound); from the unit where the relative bound allows wider bins, a table of
    bins built greedily so that each holds every unit within max(absolute, relative * |x|)
    of its value. The table is integer and decimal exact (values are units / 10**decimals,
    the same doubles as the CSV's text) and built from basic float operations only, so both
    sides build the same one; it reaches `top`, the block's largest magnitude in units.
    """

    decimals: int
    step: int  # units per bin near zero (odd)
    uniform_top: int  # bins 0..uniform_top are uniform
    relative: float
    absolute: float  # in units
    top: int

    @property
    def integer(self) -> bool:
        return self.decimals == 0

    def to_dict(self) -> dict:
        return {"kind": "units", **asdict(self), "integer": self.integer}

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        return _bin_table(self.step, self.uniform_top, self.absolute, self.relative, self.top)

    def _units(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(x, dtype=np.float64) * 10.0**self.decimals

    def coordinate(self, x: np.ndarray) -> np.ndarray:
        u = self._units(x)
        magnitude = np.abs(u)
        starts, values = self._table()
        edge = float(self.uniform_top * self.step)
        out = magnitude / self.step
        if len(values):
            points = np.concatenate([[edge], values.astype(np.float64)])
            index = self.uniform_top + np.arange(len(points), dtype=np.float64)
            inside = np.interp(magnitude, points, index)
            with np.errstate(divide="ignore", invalid="ignore"):
                beyond = index[-1] + np.log(magnitude / points[-1]) / (2 * self.relative)
            tabled = np.where(magnitude <= points[-1], inside, beyond)
            out = np.where(magnitude <= edge, out, tabled)
        return np.sign(u) * out

    def index(self, x: np.ndarray) -> np.ndarray:
        u = np.rint(np.clip(np.nan_to_num(self._units(x)), -MAX_INDEX, MAX_INDEX))
        magnitude = np.abs(u).astype(np.int64)
        half = (self.step - 1) // 2
        k = (magnitude + half) // self.step
        starts, _ = self._table()
        if len(starts):
            row = np.searchsorted(starts, magnitude, side="right") - 1
            k = np.where(row >= 0, self.uniform_top + 1 + row, np.minimum(k, self.uniform_top))
        return np.sign(u).astype(np.int64) * k

    def value(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.int64)
        magnitude = np.abs(k)
        units = (magnitude * self.step).astype(np.float64)
        _, values = self._table()
        if len(values):
            row = np.clip(magnitude - self.uniform_top - 1, 0, len(values) - 1)
            units = np.where(magnitude <= self.uniform_top, units, values[row].astype(np.float64))
        units = np.sign(k) * units
        return units / 10.0**self.decimals if self.decimals else units

    def representable(self, x: np.ndarray, tolerance: Tolerance) -> tuple[np.ndarray, np.ndarray]:
        k = self.index(x)
        magnitude = np.abs(np.rint(self._units(x)))
        ok = within(x, self.value(k), tolerance) & (magnitude <= max(self.top, 0) + 0.0)
        return k, ok


@functools.lru_cache(maxsize=256)
def _bin_table(step: int, uniform_top: int, absolute: float, relative: float, top: int):
    """(first unit, value) of each bin beyond the uniform zone, up to `top` units."""
    starts, values = [], []
    start = uniform_top * step + (step - 1) // 2 + 1
    while relative > 0 and start <= top:
        value = start + math.floor(max(absolute, relative * start))
        end = max(value + math.floor(absolute), math.floor(value / (1.0 - relative)))
        starts.append(start)
        values.append(value)
        start = end + 1
    return np.asarray(starts, dtype=np.int64), np.asarray(values, dtype=np.int64)


def unit_grid(values: np.ndarray, decimals: int, tolerance: Tolerance) -> UnitGrid | None:
    """The unit grid of a column of decimals, or None when its table would be too long."""
    scale = 10.0**decimals
    units = np.abs(np.rint(values * scale))
    top = int(units.max(initial=0))
    absolute = tolerance.absolute * scale
    step = 2 * math.floor(absolute) + 1 if absolute >= 1 else 1
    if tolerance.relative == 0:
        return UnitGrid(decimals, step, top // step + 1, 0.0, absolute, top)
    # The uniform zone ends where the relative bound makes bins wider than `step`.
    uniform_top = math.ceil(max(absolute, 1.0) / tolerance.relative / step)
    start = uniform_top * step
    if top > start and math.log(top / start) / (2 * tolerance.relative) > MAX_TABLE:
        return None
    return UnitGrid(decimals, step, uniform_top, tolerance.relative, absolute, top)


def grid_from_dict(data: dict):
    if data.get("kind") == "units":
        fields = {k: v for k, v in data.items() if k in UnitGrid.__dataclass_fields__}
        return UnitGrid(**fields)
    return Grid.from_dict(data)


def within(x: np.ndarray, decoded: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Whether each decoded value keeps the bound (lossless: the same float64 bits; NaN is
    compared as missing, elsewhere)."""
    x = np.asarray(x, dtype=np.float64)
    decoded = np.asarray(decoded, dtype=np.float64)
    if tolerance.lossless:
        return x.view(np.int64) == decoded.view(np.int64)
    bound = np.maximum(tolerance.absolute, tolerance.relative * np.abs(x))
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(decoded - x) <= bound


def choose_grid(values: np.ndarray, tolerance: Tolerance) -> Grid:
    """The grid for one column of one block, from its present (finite) values and bound."""
    values = np.asarray(values, dtype=np.float64)
    integer = bool(len(values)) and bool(
        np.all((values == np.rint(values)) & (np.abs(values) < 2.0**53))
    )
    decimals = 0 if integer else decimal_digits(values)
    if decimals >= 0:
        grid = unit_grid(values, decimals, tolerance)
        if grid is not None:
            return grid
    if tolerance.lossless:
        if decimals < 0:
            return Grid(0.0, -1, math.inf, 0.0, False)
        return Grid(10.0**-decimals, decimals, math.inf, 0.0, integer)
    step, decimals = _uniform_step(values, tolerance, integer, decimals)
    if tolerance.relative == 0:
        return Grid(step, decimals, math.inf, 0.0, integer)
    return _with_geometric_zone(step, decimals, tolerance.relative, integer)


def _uniform_step(
    values: np.ndarray, tolerance: Tolerance, integer: bool, decimals: int
) -> tuple[float, int]:
    """(step, decimals) of the uniform zone: the coarser of 2 * absolute tolerance and the
    values' own decimal step (which decodes them exactly)."""
    if integer:
        # An odd integer step s keeps integers within (s - 1) / 2 <= absolute tolerance.
        return float(2 * math.floor(tolerance.absolute) + 1), -1 if tolerance.absolute >= 1 else 0
    natural = 10.0**-decimals if decimals >= 0 else 0.0
    if natural > 0 and natural >= 2 * tolerance.absolute:
        return natural, decimals
    if tolerance.absolute > 0:
        return 2 * tolerance.absolute, -1
    # A relative bound alone, on values with no short decimal step: a tiny uniform zone (its
    # few values that miss the bound are escaped), below nearly every nonzero magnitude.
    nonzero = np.abs(values[values != 0])
    small = float(np.quantile(nonzero, 0.001)) if len(nonzero) else 1.0
    step = 2.0 ** math.floor(math.log2(max(small * tolerance.relative, 2.0**-1074)))
    return step, -1


def _with_geometric_zone(step: float, decimals: int, relative: float, integer: bool) -> Grid:
    if integer:
        # Rounding a geometric value to an integer moves it by up to 0.5: start where that is
        # at most an eighth of the bound, and narrow the bins by it.
        start = step * math.ceil(4.0 / relative / step)
        ratio = relative - 0.5 / start
    else:
        ratio = relative
        start = None
    # Every x in [v / (1 + r), v * (1 + r)] is within r * |x| of v: bins of log-width 2 ln(1+r).
    log_step = 2.0 * math.log1p(ratio) * SAFETY
    if start is None:
        # Where the geometric bins become wider than the uniform step.
        start = step * max(1.0, math.ceil(1.0 / log_step))
    return Grid(step, decimals, float(start), log_step, integer)


def decimal_digits(values: np.ndarray) -> int:
    """The fewest decimal digits d <= 15 that write at least DECIMAL_SHARE of the values
    exactly (k / 10**d is the same double), or -1."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return 0
    sample = values if len(values) <= 4096 else values[:: len(values) // 4096 + 1]
    for d in range(MAX_DECIMALS + 1):
        scale = 10.0**d
        with np.errstate(over="ignore", invalid="ignore"):
            k = np.rint(sample * scale)
            hit = (np.abs(k) < MAX_INDEX) & ((k / scale) == sample)
        if hit.mean() >= DECIMAL_SHARE:
            return d
    return -1
