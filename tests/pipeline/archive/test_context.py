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
