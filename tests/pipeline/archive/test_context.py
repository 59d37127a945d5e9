"""The mixture of adaptive context models numbers and categories are coded under: exact round
trips (with and without a dictionary primer), what it learns (a parent that determines the
value, a primer that shows the distribution), and the closed-form pieces."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from pipeline.archive import context

_queue = constriction.stream.queue


def uniform_base(size: int, count: int):
    return lambda rows: np.full((len(range(count)[rows]), size), 1.0 / size)


def round_trip(symbols, size, contexts, primer=None):
    encoder = _queue.RangeEncoder()
    base = uniform_base(size, len(symbols))
    _, estimate = context.code(encoder, symbols, base, len(symbols), size, contexts, primer)
    decoder = _queue.RangeDecoder(encoder.get_compressed())
    decoded, _ = context.code(decoder, None, base, len(symbols), size, contexts, primer)
    return decoded, encoder.num_bits(), estimate


def test_compact_gives_one_id_per_value_and_one_for_missing():
    ids, count = context.compact(np.array([3.0, np.nan, 3.0, -1.0, np.nan]))
    assert count == 3
    assert ids[0] == ids[2] and ids[1] == ids[4] and len({ids[0], ids[1], ids[3]}) == 3
    pair_ids, pairs = context.pair(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert pairs == 4 and len(set(pair_ids)) == 4


def test_gaussian_bins_are_distributions_with_a_floor():
    p = context.gaussian_bins(np.array([0.0, 5.0, 40.0]), np.array([0.05, 2.0, 1.0]), 10)
    assert p.shape == (3, 10)
    assert np.allclose(p.sum(axis=1), 1.0) and p.min() > 0
    assert p[0].argmax() == 0 and p[1].argmax() == 5 and p[2].argmax() == 9  # tails folded


def test_a_parent_that_determines_the_value_is_chosen_and_learned():
    rng = np.random.default_rng(0)
    parent = rng.integers(0, 8, 3000)
    symbols = ((parent * 5) % 16).astype(np.int32)  # a function of the parent
    noise = rng.integers(0, 8, 3000)
    assert context.choose_parents(symbols, {"noise": noise, "parent": parent})[0] == "parent"
    blind = context.contexts(np.zeros(3000), [])
    informed = context.contexts(np.zeros(3000), [parent.astype(float)])
    decoded, blind_bits, _ = round_trip(symbols, 16, blind)
    assert np.array_equal(decoded, symbols)
    decoded, informed_bits, estimate = round_trip(symbols, 16, informed)
    assert np.array_equal(decoded, symbols)
    assert informed_bits < 0.2 * blind_bits  # about log2(8) bits per value: the parent's
    assert abs(estimate - informed_bits) < 64  # the estimate is the code length


def test_a_primer_counts_before_the_block_and_pays_off():
    rng = np.random.default_rng(1)
    size = 64
    symbols = rng.choice(size, 2000, p=np.r_[[0.5], np.full(size - 1, 0.5 / (size - 1))])
    symbols = symbols.astype(np.int32)
    primer = rng.choice(size, 5000, p=np.r_[[0.5], np.full(size - 1, 0.5 / (size - 1))])
    primer[:10] = -1  # values the block's alphabet cannot hold are skipped
    plain = context.contexts(np.zeros(2000), [])
    parent = rng.integers(0, 3, 7000).astype(float)
    primed = context.contexts(np.zeros(2000), [parent], 5000)
    assert primed.primed[1] is not None and len(primed.primed[1]) == 5000
    _, cold, _ = round_trip(symbols, size, plain)
    decoded, warm, _ = round_trip(symbols, size, primed, primer.astype(np.int32))
    assert np.array_equal(decoded, symbols)
    assert warm < cold


def test_a_single_value_alphabet_codes_nothing():
    encoder = _queue.RangeEncoder()
    contexts = context.contexts(np.zeros(5), [])
    out, bits = context.code(encoder, np.zeros(5, np.int32), uniform_base(1, 5), 5, 1, contexts)
    assert bits == 0.0 and encoder.num_bits() == 0 and np.array_equal(out, np.zeros(5))


@pytest.mark.parametrize("primed_prediction", [False, True])
def test_contexts_split_the_dictionarys_ids_from_the_blocks(primed_prediction):
    parents = [np.r_[np.zeros(3), np.arange(4.0)], np.r_[np.ones(3), np.arange(4.0)]]
    prediction = np.arange(7.0) if primed_prediction else np.arange(4.0)
    made = context.contexts(prediction, parents, 3, primed_prediction)
    assert all(len(ids) == 4 for ids in made.ids)
    assert all(p is None or len(p) == 3 for p in made.primed)
    assert (made.primed[0] is not None) == primed_prediction  # the decoder's bin
    assert all(base < 2 + i for i, base in enumerate(made.bases))  # back off to earlier ones


def gaussian_round_trip(symbols, location, spread, size, contexts, primer=None):
    base = context.Gaussian(location, spread, size)
    encoder = _queue.RangeEncoder()
    _, bits = context.code(encoder, symbols, base, len(symbols), size, contexts, primer)
    decoder = _queue.RangeDecoder(encoder.get_compressed())
    decoded, _ = context.code(decoder, None, base, len(symbols), size, contexts, primer)
    return decoded, encoder.num_bits(), bits


def noisy_column(n: int, size: int, seed: int):
    """Bins near a decoder's mean, a parent that shifts them, and the decoder's bin."""
    rng = np.random.default_rng(seed)
    location = rng.uniform(-3, size + 3, n)
    spread = rng.exponential(4.0, n) + 0.05
    parent = rng.integers(0, 6, n)
    symbols = np.rint(location + spread * rng.standard_normal(n)) + 3 * (parent == 2)
    symbols = np.clip(symbols, 0, size - 1).astype(np.int32)
    prediction = np.clip(np.rint(location), 0, size - 1)
    return symbols, location, spread, parent.astype(float), prediction


@pytest.mark.parametrize("size", [20, 300])  # one level, two levels
def test_the_estimate_is_the_coded_length(size):
    symbols, location, spread, parent, prediction = noisy_column(5000, size, 2)
    contexts = context.contexts(prediction, [parent])
    decoded, coded, bits = gaussian_round_trip(symbols, location, spread, size, contexts)
    assert np.array_equal(decoded, symbols)
    picked = context.gaussian_pick(location, spread, size, symbols)
    estimate = context.estimate(symbols, picked, size, contexts)
    # The same model counted two ways (a wide Gaussian's bins are picked at their midpoints).
    assert abs(estimate - bits) < 1e-4 * bits + 1.0
    assert abs(estimate - coded) < 0.01 * coded + 64  # what the range coder writes


def test_the_estimate_counts_the_primer_as_code_does():
    rng = np.random.default_rng(3)
    size = 40
    symbols = rng.integers(0, 8, 3000).astype(np.int32)
    primer = rng.integers(-1, 8, 4000).astype(np.int32)  # -1: outside the alphabet
    parent = rng.integers(0, 4, 7000).astype(float)
    contexts = context.contexts(np.zeros(3000), [parent], 4000)
    encoder = _queue.RangeEncoder()
    base = uniform_base(size, 3000)
    _, bits = context.code(encoder, symbols, base, 3000, size, contexts, primer)
    estimate = context.estimate(symbols, np.full(3000, 1.0 / size), size, contexts, primer)
    assert abs(estimate - bits) < 1e-6 * bits + 1.0
    assert abs(estimate - encoder.num_bits()) < 0.01 * encoder.num_bits() + 64


def test_two_levels_code_as_short_as_one(monkeypatch):
    size = 300
    symbols, location, spread, parent, prediction = noisy_column(4000, size, 4)
    contexts = context.contexts(prediction, [parent])
    decoded, two, _ = gaussian_round_trip(symbols, location, spread, size, contexts)
    assert np.array_equal(decoded, symbols) and context.block_width(size) > 1
    monkeypatch.setattr(context, "TWO_LEVEL", 10**6)
    decoded, one, _ = gaussian_round_trip(symbols, location, spread, size, contexts)
    assert np.array_equal(decoded, symbols)
    assert abs(two - one) < 0.005 * one + 64


def test_gaussian_blocks_and_bins_are_its_bins_summed():
    rng = np.random.default_rng(5)
    size, width = 53, 8
    location, spread = rng.uniform(-10, 60, 40), rng.exponential(3.0, 40) + 0.05
    gaussian = context.Gaussian(location, spread, size)
    table = gaussian.table(slice(None))
    padded = np.zeros((40, 7 * width))
    padded[:, :size] = table
    summed = padded.reshape(40, 7, width).sum(axis=2)
    blocks = gaussian.blocks(slice(None), width)
    first = np.full(40, 48)  # the last block: 5 bins, then 3 beyond the alphabet
    bins = gaussian.bins(slice(None), first, width)
    assert np.all(bins[:, 5:] <= context.FLOOR)
    narrow = spread <= context.WIDE  # CDF differences: the same masses
    assert np.allclose(blocks[narrow], summed[narrow], rtol=1e-6, atol=1e-8)
    assert np.allclose(bins[narrow, :5], table[narrow, 48:], rtol=1e-6, atol=1e-8)
    assert np.allclose(blocks.sum(axis=1), 1.0, atol=1e-6)  # the tails folded in


def test_gaussian_bins_window_is_the_whole_rows_computation():
    from scipy.special import ndtr

    rng = np.random.default_rng(6)
    size = 101
    location, spread = rng.uniform(-20, 120, 64), rng.exponential(1.0, 64) + 0.05
    narrow = spread <= context.WIDE
    edges = np.arange(size + 1, dtype=np.float64) - 0.5
    cdf = ndtr((edges[None, :] - location[:, None]) / spread[:, None])
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    whole = np.maximum(np.diff(cdf, axis=1), context.FLOOR)
    whole /= whole.sum(axis=1, keepdims=True)
    got = context.gaussian_bins(location, spread, size)
    assert np.array_equal(got[narrow], whole[narrow])  # the same numbers, bit for bit
    bulk = ~narrow[:, None] & (whole > 1e-3)  # a wide one's midpoints: close but for tails
    assert np.allclose(got[bulk], whole[bulk], rtol=0.1)


def test_compact_without_sorting_ranks_as_unique_does():
    values = np.array([5.0, -1.0, np.nan, 5.0, 2.0, -0.0, 0.0, np.nan, 7.0])
    ids, count = context.compact(values)
    x = values.copy()
    x[np.isnan(x)] = np.inf
    _, expected = np.unique(x, return_inverse=True)
    assert count == 6 and np.array_equal(ids, expected)
    subset = np.array([0, 2, 4, 8])
    assert np.array_equal(context.recompact(ids[subset], count), context.compact(values[subset])[0])


def test_batches_start_small_and_grow():
    bounds = context.batches(20_000)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == 20_000
    assert sizes[0] == context.BATCH and np.all(sizes[:-1] >= context.BATCH)
    assert sizes[-2] > 8 * context.BATCH  # late batches hold many values
    assert np.array_equal(context.batches(0), [0])
