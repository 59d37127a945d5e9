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
the mixture may switch), updated every BATCH values identically on both sides. Nothing is
learned beforehand: the corrections are part of the code, paid for by the first values of a
context. Everything is a float computation both sides repeat on the same inputs (the
decoder's snapped outputs, values already decoded); a block's CRC catches a machine that
computes otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import constriction
import numpy as np

_model = constriction.stream.model

MAX_ALPHABET = 1024  # bins of a column's range; a wider one is coded by `coder` alone
MAX_CONTEXTS = 4096  # distinct values of a context; more cannot be learned in one block
BATCH = 64  # values between weight and count updates (smaller: faster learning, slower)
ALPHA = 4.0
BETA = 4.0
SHARE = 0.02
FLOOR = 1e-9  # the least probability of a bin under the Gaussian
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
    x = np.asarray(values, dtype=np.float64).copy()
    x[np.isnan(x)] = np.inf
    _, ids = np.unique(x, return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    return ids, int(ids.max(initial=-1)) + 1


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
    block's; `prediction` too when `primed_prediction`, else the block's only."""
    split = primed_rows
    bin_ids = compact(prediction)
    binned = primed_prediction
    parent_ids = [compact(p) for p in parents]
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
    for key, ids in candidates.items():
        if int(ids.max(initial=0)) + 1 > MAX_CONTEXTS:
            continue
        joint = ids.astype(np.int64) * (int(symbols.max()) + 1) + symbols
        _, pair_counts = np.unique(joint, return_counts=True)
        _, context_counts = np.unique(ids, return_counts=True)
        bits = -(pair_counts * np.log2(pair_counts)).sum()
        bits += (context_counts * np.log2(context_counts)).sum()
        scores.append((bits + 0.5 * np.log2(n) * len(pair_counts), key))
    scores.sort()
    return [key for _, key in scores[:N_PARENTS]]


def gaussian_bins(location: np.ndarray, spread: np.ndarray, size: int) -> np.ndarray:
    """(rows, size) probabilities of bins 0..size-1 under N(location, spread) (the tails
    folded into the end bins), each at least FLOOR, rows summing to 1."""
    from scipy.special import ndtr

    edges = np.arange(size + 1, dtype=np.float64) - 0.5
    cdf = ndtr((edges[None, :] - location[:, None]) / spread[:, None])
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    p = np.maximum(np.diff(cdf, axis=1), FLOOR)
    return p / p.sum(axis=1, keepdims=True)


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
    returns (the symbols, their code length in bits under the mixture). `base(rows)` is the
    decoder's distribution of those rows' symbols ((rows, size), rows summing to 1).
    `primer`: the dictionary's symbols (-1: none), counted before the block's first."""
    if size == 1:  # one possible value (the header's): nothing to code
        return np.zeros(count, dtype=np.int32), 0.0
    n_models = 2 + len(context.ids)
    tables = [np.zeros((m, size)) for m in context.counts]
    totals = [np.zeros(m) for m in context.counts]
    histogram = np.zeros(size)
    seen = 0
    if primer is not None and len(primer):
        keep = primer >= 0
        s = primer[keep]
        histogram += np.bincount(s, minlength=size)
        seen = len(s)
        for ids, table, total in zip(context.primed, tables, totals, strict=True):
            if ids is not None:
                np.add.at(table, (ids[keep], s), 1.0)
                np.add.at(total, ids[keep], 1.0)
    log_weights = np.zeros(n_models)
    out = np.zeros(count, dtype=np.int32)
    family = _model.Categorical(perfect=False)
    bits = 0.0
    for start in range(0, count, BATCH):
        rows = slice(start, start + BATCH)
        gaussian = base(rows)
        column = (histogram[None, :] + BETA * gaussian) / (seen + BETA)
        models = [gaussian, column]
        for ids, table, total, back in zip(context.ids, tables, totals, context.bases, strict=True):
            c = ids[rows]
            models.append((table[c] + ALPHA * models[back]) / (total[c][:, None] + ALPHA))
        weights = np.exp(log_weights - log_weights.max())
        weights /= weights.sum()
        mixture = np.tensordot(weights, np.stack(models), axes=1)
        if symbols is None:
            out[rows] = coder.decode(family, mixture)
        else:
            out[rows] = symbols[rows]
            coder.encode(out[rows], family, mixture)
        s = out[rows]
        picked = np.stack([m[np.arange(len(s)), s] for m in models])  # (models, rows)
        bits -= np.log2(weights @ picked).sum()
        log_weights = _share(log_weights + np.log(picked).sum(axis=1))
        np.add.at(histogram, s, 1.0)
        seen += len(s)
        for ids, table, total in zip(context.ids, tables, totals, strict=True):
            np.add.at(table, (ids[rows], s), 1.0)
            np.add.at(total, ids[rows], 1.0)
    return out, bits


def _share(log_weights: np.ndarray) -> np.ndarray:
    """Fixed share: every model keeps SHARE of the weight, so the mixture can switch."""
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    weights = (1.0 - SHARE) * weights + SHARE / len(weights)
    return np.log(weights)
