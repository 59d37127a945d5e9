"""Numbers coded under the decoder's Gaussian, corrected by what the block has already coded.

The decoder's Gaussian is a poor model of an exact count or a two-digit rate: its variance is
floored, it has one mode, and it knows nothing of the column's own frequent values. So a
number's bin index (on its tolerance grid, `quantize`) is coded, symbol by symbol, under a
mixture of adaptive models whose base measure is that Gaussian:

- the Gaussian itself (the decoder's bins, over the block's range of indices);
- the column's histogram so far, smoothed by the Gaussian: (n_k + BETA g(k)) / (n + BETA);
- per context c, the histogram of the values seen in that context so far, smoothed by the
  column's histogram: (n_ck + ALPHA q(k)) / (n_c + ALPHA). The contexts are the bin the
  decoder's mean points at (a calibration table: what the value is when the decoder says
  that), and the values of up to two columns coded before this one (categories, then the
  numbers in order), alone, as a pair, and with the decoder's bin: a Bayesian-network
  parent in the spirit of Squish, chosen by the encoder per column and block;

mixed with Bayesian weights (every model's code length so far, with a fixed share so that
the mixture may switch), updated after every batch of values (BATCH, then GROWTH of those
coded so far) identically on both sides. Nothing is learned beforehand: the corrections are
part of the code, paid for by the first values of a context. Everything is a float
computation both sides repeat on the same inputs (the decoder's snapped outputs, values
already decoded); a block's CRC catches a machine that computes otherwise.

Speed: a wide alphabet is coded in two levels (the block of about sqrt(size) bins, then the
bin in it), so a value costs two tables of about sqrt(size) entries, not one of size; the
encoder chooses between this code and the plain Gaussian from code-length estimates
(`estimate`: every count the decoder will read is known to the encoder, so the code length is
found without coding); the count tables of all models live in one array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import constriction
import numpy as np

_model = constriction.stream.model

MAX_ALPHABET = 1024  # bins of a column's range; a wider one is coded by `coder` alone
SMALL = 1 << 22  # integer ranges `compact` ranks without sorting
MAX_CONTEXTS = 4096  # distinct values of a context; more cannot be learned in one block
BATCH = 64  # values between weight and count updates (smaller: faster learning, slower)
LEAK = 2.0**-24  # the range coder's least probability of a symbol (precision 24)
TWO_LEVEL = 32  # a wider alphabet is coded in two levels (`block_width`)
GROWTH = 1 / 16  # later batches: this share of the rows coded so far
ALPHA = 4.0
BETA = 4.0
SHARE = 0.02
FLOOR = 1e-9  # the least probability of a bin under the Gaussian
TAIL = 6.2  # spreads beyond which a bin's Gaussian mass is below FLOOR (Q(6.2) < 3e-10)
WIDE = 2.0  # bins: a wider Gaussian's bins are taken at their midpoints
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
N_PARENTS = 2


@dataclass(frozen=True)
class Contexts:
    """The context ids (0..count-1) of each of a column's present values, one array per
    context model, and of the dictionary's values (`primed`, None for a model that cannot be
    primed: the decoder's bin is not known for the dictionary's records)."""

    ids: tuple[np.ndarray, ...]
    counts: tuple[int, ...]
    bases: tuple[int, ...]  # the model each context model backs off to (1: the column's)
    primed: tuple[np.ndarray | None, ...] = ()


def compact(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids 0..m-1 of each value's distinct value (all missing values one more)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    missing = np.isnan(x)
    present = x[~missing]
    low = present.min(initial=0.0)
    span = present.max(initial=0.0) - low
    if span < SMALL and np.array_equal(present, np.floor(present)):
        # Integers of a short range (classes, bins, counts): ranked without sorting.
        shifted = np.where(missing, span + 1, x - low).astype(np.int64)
        ids = recompact(shifted, int(span) + 2)
        return ids, int(ids.max(initial=-1)) + 1
    x = x.copy()
    x[missing] = np.inf
    _, ids = np.unique(x, return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    return ids, int(ids.max(initial=-1)) + 1


def recompact(ids: np.ndarray, count: int) -> np.ndarray:
    """`compact` of a subset of values, from their ids 0..count-1 in the whole set (the
    order of the ids is kept, so this is the subset's `compact`, without sorting)."""
    used = np.zeros(count, dtype=bool)
    used[ids] = True
    return (np.cumsum(used) - 1)[ids]


def pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    return compact(a.astype(np.int64) * (int(b.max(initial=0)) + 1) + b.astype(np.int64))


def contexts(
    prediction: np.ndarray,
    parents: Sequence[np.ndarray],
    primed_rows: int = 0,
    primed_prediction: bool = False,
) -> Contexts:
    """The context models of one column, each backing off to a coarser one: the decoder's
    bin, each parent, the parents as a pair (backing off to the first), the first parent
    with the decoder's bin (backing off to the bin alone). Models are numbered 0 (the
    Gaussian), 1 (the column's histogram), then these; one with more than MAX_CONTEXTS
    ids is left out. `parents` hold the dictionary's `primed_rows` values first, then the
    block's (values, or (ids, count) already `compact`); `prediction` too when
    `primed_prediction`, else the block's only."""
    split = primed_rows
    bin_ids = compact(prediction)
    binned = primed_prediction
    parent_ids = [p if isinstance(p, tuple) else compact(p) for p in parents]
    wanted = [(bin_ids, "column", binned)] + [(p, "column", True) for p in parent_ids]
    if len(parent_ids) >= 2:
        wanted.append((pair(parent_ids[0][0], parent_ids[1][0]), "parent", True))
    if parent_ids:
        first = parent_ids[0][0] if binned else parent_ids[0][0][split:]
        wanted.append((pair(first, bin_ids[0]), "bin", binned))
    if len(parent_ids) >= 2 and binned:
        both = pair(parent_ids[0][0], parent_ids[1][0])[0]
        wanted.append((pair(both, bin_ids[0]), "first_bin", True))
    ids, counts, bases, primed = [], [], [], []
    position = {"column": 1}
    for i, ((values, m), base, has_prime) in enumerate(wanted):
        if m > MAX_CONTEXTS or base not in position:
            continue
        position.setdefault("bin" if i == 0 else "parent", 2 + len(ids))
        if i == len(parent_ids) + (2 if len(parent_ids) >= 2 else 1):
            position["first_bin"] = 2 + len(ids)  # the first parent with the bin
        ids.append(values[split:] if has_prime else values)
        primed.append(values[:split] if has_prime else None)
        counts.append(m)
        bases.append(position[base])
    return Contexts(tuple(ids), tuple(counts), tuple(bases), tuple(primed))


def choose_parents(symbols: np.ndarray, candidates: dict[int, np.ndarray]) -> list[int]:
    """Up to N_PARENTS earlier columns whose values tell the most about this column's: the
    plug-in conditional entropy of the symbols given each candidate's ids, plus half a
    log2(n) per (context, value) pair to learn (what an adaptive code pays for it)."""
    n = len(symbols)
    if n == 0:
        return []
    scores = []
    values = int(symbols.max()) + 1
    for key, ids in candidates.items():
        contexts = int(ids.max(initial=0)) + 1
        if contexts > MAX_CONTEXTS:
            continue
        joint = ids.astype(np.int64) * values + symbols
        if contexts * values <= max(4 * n, 1 << 16):  # counted in a table, not sorted
            pair_counts = np.bincount(joint, minlength=contexts * values)
            pair_counts = pair_counts[pair_counts > 0]
        else:
            _, pair_counts = np.unique(joint, return_counts=True)
        context_counts = np.bincount(ids)
        context_counts = context_counts[context_counts > 0]
        bits = -(pair_counts * np.log2(pair_counts)).sum()
        bits += (context_counts * np.log2(context_counts)).sum()
        scores.append((bits + 0.5 * np.log2(n) * len(pair_counts), key))
    scores.sort()
    return [key for _, key in scores[:N_PARENTS]]


def gaussian_bins(location: np.ndarray, spread: np.ndarray, size: int) -> np.ndarray:
    """(rows, size) probabilities of bins 0..size-1 under N(location, spread) (the tails
    folded into the end bins), each at least FLOOR, rows summing to 1. A narrow Gaussian's
    bins are its CDF's differences, over a window around the mean (a bin TAIL spreads or
    more away holds less than FLOOR); a wide one's (spread > WIDE bins) are its density at
    the bin's middle, within 1 / (24 WIDE**2) of the CDF's difference and far cheaper."""
    p = np.empty((len(location), size))
    wide = spread > WIDE
    if wide.any():
        p[wide] = _midpoints(location[wide], spread[wide], size)
    if not wide.all():
        p[~wide] = _windows(location[~wide], spread[~wide], size)
    return p / p.sum(axis=1, keepdims=True)


def _windows(location: np.ndarray, spread: np.ndarray, size: int) -> np.ndarray:
    from scipy.special import ndtr

    rows = len(location)
    reach = int(np.ceil(TAIL * spread.max())) + 1
    width = min(2 * reach + 2, size)
    low = np.floor(np.clip(location, -1.0, size + 1.0)) - reach
    first = np.clip(low, 0, size - width).astype(np.int64)
    edges = (first[:, None] + np.arange(width + 1)).astype(np.float64) - 0.5
    cdf = ndtr((edges - location[:, None]) / spread[:, None])
    cdf[first == 0, 0] = 0.0
    cdf[first + width == size, -1] = 1.0
    p = np.full((rows, size), FLOOR)
    p[np.arange(rows)[:, None], first[:, None] + np.arange(width)] = np.maximum(
        np.diff(cdf, axis=1), FLOOR
    )
    return p


def _midpoints(location: np.ndarray, spread: np.ndarray, size: int) -> np.ndarray:
    x = (np.arange(size, dtype=np.float64)[None, :] - location[:, None]) / spread[:, None]
    p = np.exp(-0.5 * x * x) * (_INV_SQRT_2PI / spread)[:, None]
    p[:, 0], p[:, -1] = _tails(location, spread, size)
    return np.maximum(p, FLOOR, out=p)


def _tails(location: np.ndarray, spread: np.ndarray, size: int):
    """The masses of the end bins, the tails beyond them included."""
    from scipy.special import ndtr

    below = ndtr((0.5 - location) / spread)
    above = ndtr((location - (size - 1.5)) / spread)
    return below, above


def gaussian_pick(
    location: np.ndarray, spread: np.ndarray, size: int, symbols: np.ndarray
) -> np.ndarray:
    """`gaussian_bins(...)[i, symbols[i]]` without the (rows, size) table, but for the
    normalisation (the bins' masses sum to 1 within size x FLOOR and the midpoint rule's
    error): enough for a code-length estimate, never used to code."""
    from scipy.special import ndtr

    s = symbols.astype(np.float64)
    upper = np.where(s >= size - 1, 1.0, ndtr((s + 0.5 - location) / spread))
    lower = np.where(s <= 0, 0.0, ndtr((s - 0.5 - location) / spread))
    narrow = upper - lower
    x = (s - location) / spread
    middle = np.exp(-0.5 * x * x) * _INV_SQRT_2PI / spread
    below, above = _tails(location, spread, size)
    middle = np.where(s <= 0, below, np.where(s >= size - 1, above, middle))
    return np.maximum(np.where(spread > WIDE, middle, narrow), FLOOR)


def batches(count: int) -> np.ndarray:
    """The first row of each batch, then `count`: BATCH rows while the block is young, then
    GROWTH x the rows coded so far (counts that already hold thousands of values
    change little in a few hundred more; fewer batches are fewer steps to decode)."""
    bounds = [0]
    while bounds[-1] < count:
        start = bounds[-1]
        bounds.append(min(count, start + max(BATCH, int(start * GROWTH))))
    return np.asarray(bounds, dtype=np.int64)


def block_width(size: int) -> int:
    """Bins per block of a two-level code (0: one level): about the square root of `size`,
    so that a value costs two tables of some sqrt(size) entries instead of one of size."""
    return 0 if size <= TWO_LEVEL else math.isqrt(size - 1) + 1


class Dense:
    """A base measure given as a function of rows -> (rows, size) table."""

    def __init__(self, table) -> None:
        self.table = table

    def blocks(self, rows: slice, width: int) -> np.ndarray:
        """(rows, blocks) masses of the blocks of `width` bins."""
        p = self.table(rows)
        blocks = -(-p.shape[1] // width)
        padded = np.zeros((p.shape[0], blocks * width))
        padded[:, : p.shape[1]] = p
        return padded.reshape(p.shape[0], blocks, width).sum(axis=2)

    def bins(self, rows: slice, first: np.ndarray, width: int) -> np.ndarray:
        """(rows, width) masses of bins first..first + width - 1 (0 beyond the last bin)."""
        p = self.table(rows)
        columns = first[:, None] + np.arange(width)
        inside = columns < p.shape[1]
        picked = p[np.arange(len(p))[:, None], np.minimum(columns, p.shape[1] - 1)]
        return np.where(inside, picked, 0.0)


class Gaussian:
    """The decoder's Gaussian over bins 0..size-1 (`gaussian_bins`); its blocks' and bins'
    masses are CDF differences at their edges (the tails folded into the end bins), each
    at least FLOOR."""

    def __init__(self, location: np.ndarray, spread: np.ndarray, size: int) -> None:
        self.location, self.spread, self.size = location, spread, size
        # Bin e's lower edge, for e = 0..2 size: -inf for the first, +inf from the last's end.
        edges = np.arange(2 * size + 1, dtype=np.float64) - 0.5
        edges[0], edges[size:] = -np.inf, np.inf
        self._edges = edges

    def table(self, rows: slice) -> np.ndarray:
        return gaussian_bins(self.location[rows], self.spread[rows], self.size)

    def _masses(self, rows: slice, edges: np.ndarray) -> np.ndarray:
        """Masses between consecutive edges ((rows, k + 1) bin numbers, from `_edges`)."""
        from scipy.special import ndtr

        z = (self._edges[edges] - self.location[rows, None]) / self.spread[rows, None]
        return np.maximum(np.diff(ndtr(z), axis=1), FLOOR)

    def blocks(self, rows: slice, width: int) -> np.ndarray:
        blocks = -(-self.size // width)
        edges = np.minimum(np.arange(blocks + 1) * width, self.size)
        return self._masses(rows, np.broadcast_to(edges, (len(self.location[rows]), blocks + 1)))

    def bins(self, rows: slice, first: np.ndarray, width: int) -> np.ndarray:
        """Bins beyond the last one get FLOOR (`code` gives them no mass)."""
        return self._masses(rows, first[:, None] + np.arange(width + 1))


class _Tables:
    """The counts of every count model in one (rows, size) table: row 0 the column's
    histogram, then each context model's rows (model k's from offset k); their totals; and
    with `width` the same counts summed over blocks of `width` bins. `ids`: each value's
    table row in each count model (the histogram's: 0)."""

    def __init__(self, context: Contexts, size: int, count: int, primer, width: int) -> None:
        offsets = np.concatenate([[1], 1 + np.cumsum(context.counts, dtype=np.int64)])
        self.size, self.width = size, width
        self.ids = np.zeros((count, 1 + len(context.ids)), dtype=np.int64)
        for k, ids in enumerate(context.ids):
            self.ids[:, 1 + k] = ids + offsets[k]
        rows = int(offsets[-1])
        self.table = np.zeros((rows, size))
        self.totals = np.zeros(rows)
        self.blocks = -(-size // width) if width else 0
        self.block_table = np.zeros((rows, self.blocks))
        # Every bin keeps LEAK (the least probability the range coder gives a symbol): a
        # value the mixture thinks impossible costs what it would in one level.
        self.block_leak = LEAK * np.minimum(width, size - width * np.arange(self.blocks))
        if primer is None or not len(primer):
            return
        keep = primer >= 0
        s = primer[keep].astype(np.int64)
        c = np.full((len(s), 1 + len(context.ids)), -1, dtype=np.int64)
        c[:, 0] = 0
        for k, ids in enumerate(context.primed):
            if ids is not None:
                c[:, 1 + k] = ids[keep].astype(np.int64) + offsets[k]
        used = c >= 0
        self.add(c[used], np.broadcast_to(s[:, None], c.shape)[used])

    def add(self, c: np.ndarray, s: np.ndarray) -> None:
        """Count symbols `s` in table rows `c` (the same shape, or `s` one per row of c)."""
        if c.ndim == 2:
            s = np.broadcast_to(s[:, None], c.shape)
        np.add.at(self.table.reshape(-1), (c * self.size + s).reshape(-1), 1.0)
        np.add.at(self.totals, c.reshape(-1), 1.0)
        if self.width:
            flat = (c * self.blocks + s // self.width).reshape(-1)
            np.add.at(self.block_table.reshape(-1), flat, 1.0)


class _Chain:
    """The models: 0 the base measure, then the count models (1 the column's histogram,
    backing off to the base with strength BETA; 2 + k context model k, backing off to
    `bases[k]` with strength ALPHA): (counts + strength x the model behind) / (total +
    strength). A model backs off to an earlier one only."""

    def __init__(self, bases: Sequence[int]) -> None:
        self.backs = np.asarray([0, *bases], dtype=np.int64)
        self.strength = np.asarray([BETA] + [ALPHA] * len(bases))
        self.steps = [(int(b), float(s)) for b, s in zip(self.backs, self.strength, strict=True)]
        self.reverse = list(range(len(self.backs)))[::-1]

    def mixing(self, weights: np.ndarray, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the weight on the base measure (rows, 1), on each count row (rows, models)):
        a model's weight flows, scaled by strength x share, to the one behind it; walked
        from the last model back, every table row is added once (elementwise products and
        sums only: the same bits on every machine)."""
        flow = np.broadcast_to(weights, (len(share), len(weights))).copy()
        passed = share * self.strength
        for m in self.reverse:
            flow[:, self.steps[m][0]] += flow[:, 1 + m] * passed[:, m]
        return flow[:, :1], flow[:, 1:] * share

    def models(self, at_base: np.ndarray, counts: np.ndarray, share: np.ndarray) -> np.ndarray:
        """(rows, 1 + count models): every model's probability of the coded symbols, from
        the base's and the count rows' masses there."""
        picked = np.empty((len(at_base), 1 + counts.shape[1]))
        picked[:, 0] = at_base
        for m, (back, strength) in enumerate(self.steps):
            picked[:, 1 + m] = (counts[:, m] + strength * picked[:, back]) * share[:, m]
        return picked


def code(
    coder,
    symbols: np.ndarray | None,
    base,
    count: int,
    size: int,
    context: Contexts,
    primer: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Encode `symbols` (0..size-1) with `coder`, or decode them when `symbols` is None;
    returns (the symbols, their code length in bits under the mixture when encoding, else
    0). `base` is the decoder's distribution of the symbols: a `Gaussian`, a `Dense`, or a
    function of rows giving their (rows, size) table, rows summing to 1. `primer`: the
    dictionary's symbols (-1: none), counted before the block's first.

    A wide alphabet is coded in two levels (`block_width`): the block of bins under the
    mixture's block masses, then the bin within it under the mixture's masses there (the
    product is the mixture's probability of the bin, so the code is as short), never a
    whole (rows, size) table. Both sides run this same function batch by batch: the same
    float operations on the same shapes, so they build the same tables bit for bit."""
    if size == 1:  # one possible value (the header's): nothing to code
        return np.zeros(count, dtype=np.int32), 0.0
    base = base if hasattr(base, "bins") else Dense(base)
    width = block_width(size)
    tables = _Tables(context, size, count, primer, width)
    chain = _Chain(context.bases)
    first_level = base.blocks(slice(0, count), width) if width else base.table(slice(0, count))
    weights = np.full(len(chain.backs) + 1, 1.0 / (len(chain.backs) + 1))
    out = np.zeros(count, dtype=np.int32)
    family = _model.Categorical(perfect=False)
    offsets = np.arange(width)
    bits = 0.0
    bounds = batches(count)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        rows = slice(start, stop)
        r = np.arange(stop - start)
        c = tables.ids[rows]
        share = 1.0 / (tables.totals[c] + chain.strength)  # (rows, count models)
        on_base, on_counts = chain.mixing(weights, share)
        wanted = None if symbols is None else symbols[rows].astype(np.int64)
        if not width:
            counts = tables.table[c]  # (rows, count models, size)
            mixture = on_base * first_level[rows] + (on_counts[:, :, None] * counts).sum(axis=1)
            s = _step(coder, family, mixture, wanted)
            at_base, counts_at = first_level[rows][r, s], counts[r, :, s]
        else:
            blocks = tables.block_table[c]
            mixture = on_base * first_level[rows] + (on_counts[:, :, None] * blocks).sum(axis=1)
            block = _step(coder, family, mixture + tables.block_leak,
                          None if wanted is None else wanted // width)  # fmt: skip
            first = block * width
            columns = first[:, None] + offsets
            inside = columns < size  # the last block may be short
            columns = np.minimum(columns, size - 1)
            bins = base.bins(rows, first, width)
            counts = tables.table[c[:, :, None], columns[:, None, :]]  # (rows, models, width)
            mixture = on_base * bins + (on_counts[:, :, None] * counts).sum(axis=1)
            mixture = np.where(inside, mixture + LEAK, 0.0)
            offset = _step(coder, family, mixture, None if wanted is None else wanted - first)
            s = first + offset
            at_base, counts_at = bins[r, offset], counts[r, :, offset]
        out[rows] = s
        picked = chain.models(at_base, counts_at, share)
        if symbols is not None:
            bits -= np.log2(picked @ weights).sum()
        weights = _update(weights, np.log(picked).sum(axis=0))
        tables.add(c, s)
    return out, bits


def _step(coder, family, mixture: np.ndarray, wanted: np.ndarray | None) -> np.ndarray:
    """Decode a batch's symbols under `mixture`, or encode `wanted`."""
    if wanted is None:
        return coder.decode(family, mixture).astype(np.int64)
    coder.encode(wanted.astype(np.int32), family, mixture)
    return wanted


def _update(weights: np.ndarray, log_likelihood: np.ndarray) -> np.ndarray:
    """Bayes' rule on the models' weights, then a fixed share: every model keeps SHARE of
    the weight, so the mixture can switch."""
    posterior = weights * np.exp(log_likelihood - log_likelihood.max())
    return (1.0 - SHARE) * posterior / posterior.sum() + SHARE / len(weights)


def estimate(
    symbols: np.ndarray,
    picked: np.ndarray,
    size: int,
    context: Contexts,
    primer: np.ndarray | None = None,
) -> float:
    """The code length in bits `code` would give `symbols`, without coding: `picked` is the
    base measure's probability of each symbol. Every count `code` reads at a batch (what the
    batches before it, and the primer, hold) is known to the encoder beforehand, so each
    model's probability of each symbol is found for all rows at once (sorting, not tables);
    only the mixture weights step through the batches."""
    count = len(symbols)
    if size == 1 or count == 0:
        return 0.0
    s = symbols.astype(np.int64)
    bounds = batches(count)
    batch = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    keep = np.zeros(0, dtype=bool) if primer is None else primer >= 0
    primed = np.zeros(0, dtype=np.int64) if primer is None else primer[keep].astype(np.int64)
    n_counts = 1 + len(context.ids)
    counts, totals = np.zeros((count, n_counts)), np.zeros((count, n_counts))
    counts[:, 0] = _prior(s, batch, primed)  # the column's histogram
    totals[:, 0] = len(primed) + bounds[batch]
    for k, ids in enumerate(context.ids):
        c = ids.astype(np.int64)
        theirs = context.primed[k] if k < len(context.primed) else None
        theirs = np.zeros(0, np.int64) if theirs is None else theirs[keep].astype(np.int64)
        mine = primed if len(theirs) else np.zeros(0, np.int64)
        totals[:, 1 + k] = _prior(c, batch, theirs)
        counts[:, 1 + k] = _prior(c * size + s, batch, theirs * size + mine)
    chain = _Chain(context.bases)
    p = chain.models(picked, counts, 1.0 / (totals + chain.strength))  # (rows, models)
    sums = np.add.reduceat(np.log(p), bounds[:-1], axis=0)
    weights = np.zeros((len(sums), p.shape[1]))
    weights[0] = 1.0 / p.shape[1]
    for b in range(1, len(sums)):
        weights[b] = _update(weights[b - 1], sums[b - 1])
    return float(-np.log2((p * weights[batch]).sum(axis=1)).sum())


def _prior(keys: np.ndarray, batch: np.ndarray, primed: np.ndarray) -> np.ndarray:
    """For each row, how many earlier batches' rows, and primer entries, hold its key."""
    order = np.argsort(keys, kind="stable")  # rows of one key stay in row (and batch) order
    ordered, in_batch = keys[order], batch[order]
    position = np.arange(len(keys))
    new_key = np.r_[True, ordered[1:] != ordered[:-1]]
    new_run = new_key | np.r_[True, in_batch[1:] != in_batch[:-1]]
    key_start = np.maximum.accumulate(np.where(new_key, position, 0))
    run_start = np.maximum.accumulate(np.where(new_run, position, 0))
    out = np.empty(len(keys))
    out[order] = run_start - key_start
    if len(primed) and max(int(keys.max()), int(primed.max())) < SMALL:
        out += np.bincount(primed, minlength=int(keys.max()) + 1)[keys]
    elif len(primed):
        sorted_primed = np.sort(primed)
        out += np.searchsorted(sorted_primed, keys, "right")
        out -= np.searchsorted(sorted_primed, keys, "left")
    return out
