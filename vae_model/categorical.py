"""All categorical features at once: the encoder's one-hot, the categorical NLL and the argmax
reconstruction as a handful of ``keras.ops`` calls, whatever the number of features.

The decoder's ``categorical_logits`` head is one Dense layer of ``sum(cardinalities)`` units:
its output ``[B, onehot_dim]`` holds every feature's logits side by side, in layout order. A
loop over the features (one slice, one-hot and log-sum-exp each) makes the traced graph, its
gradient, the tracing time and the memory grow with the number of columns: a table of 1,555
binary columns took 22 minutes and 8 GiB to train. `CategoricalPlan` precomputes, from the
cardinalities alone, the static indices that replace the loop.

How the log-sum-exp is vectorized, given cardinalities that vary from feature to feature:
the features are grouped into cardinality buckets ``(2^(k-1), 2^k]`` and each bucket's logits
are laid out as one ``[B, n_bucket, width]`` block (``width`` = the largest cardinality in the
bucket; the shorter features' padding is masked with a very negative logit), on which one
``logsumexp`` and one masked one-hot product run. We chose this over

* one ``[B, n_cat, max_cardinality]`` padded block: a single 1,000-value feature among
  thousands of binary ones would multiply the memory by ~300;
* one group per distinct cardinality: no padding, but a table whose features all have
  different vocabulary sizes would get the per-feature graph back;
* a segment log-sum-exp over the flat logits: ``segment_max``/``segment_sum`` work on the
  leading axis only (a transpose each way) and their gradients are scatters, slower on CPU
  than a dense reduction over a small last axis.

Buckets keep memory within 2x of the data (``width < 2 * cardinality``) and the graph
within ``log2(max_cardinality)`` groups. When a bucket's features are one contiguous run of
a single cardinality (all of a wide binary table) the block is a plain slice and reshape,
with no gather and no padding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

# Padding logit for the classes a shorter feature lacks: exp(pad - max) is exactly 0 in
# float32, and it stays finite so that 0 * pad (the masked one-hot product) is 0, not NaN.
PAD_LOGIT = -1e9


@dataclasses.dataclass(frozen=True, eq=False)
class _Group:
    """One cardinality bucket: ``n`` features laid out as ``[B, n, width]``."""

    width: int
    features: np.ndarray  # int32 [n]: positions among the categorical features, ascending
    feature_run: tuple[int, int] | None  # (start, stop) when ``features`` is contiguous
    columns: np.ndarray | None  # int32 [n * width]: flat logit columns (pads point anywhere)
    column_run: tuple[int, int] | None  # (start, stop) when the block is one plain slice
    valid: np.ndarray | None  # bool [n, width]: False on padding; None when there is none

    @property
    def n(self) -> int:
        return len(self.features)


class CategoricalPlan:
    """Static indices for computing over all categorical features at once.

    Args:
        cardinalities: Each categorical feature's cardinality (>= 2), in layout order.
    """

    def __init__(self, cardinalities: Sequence[int]) -> None:
        cards = np.asarray([int(c) for c in cardinalities], dtype=np.int64)
        if cards.size and cards.min() < 2:
            raise ValueError(f"cardinalities must be >= 2. Received: {cards.tolist()}")
        self.cardinalities = tuple(int(c) for c in cards)
        self.n = len(cards)
        offsets = np.concatenate([[0], np.cumsum(cards)]).astype(np.int64)
        self.dim = int(offsets[-1])
        self.uniform_cardinality = int(cards[0]) if self.n and (cards == cards[0]).all() else None
        # For the general one-hot: which feature and which class each flat column stands for.
        self.feature_of_column = _const(np.repeat(np.arange(self.n), cards))
        self.class_of_column = _const(np.arange(self.dim) - np.repeat(offsets[:-1], cards))

        buckets = (cards - 1).astype(np.int64)
        buckets = np.array([int(b).bit_length() for b in buckets], dtype=np.int64)
        groups = []
        for bucket in np.unique(buckets):
            features = np.flatnonzero(buckets == bucket)
            groups.append(_make_group(features, cards, offsets))
        self.groups: tuple[_Group, ...] = tuple(groups)
        order = np.concatenate([g.features for g in groups]) if groups else np.zeros(0, np.int64)
        # Group outputs come out bucket by bucket; this puts them back in layout order.
        in_order = np.array_equal(order, np.arange(self.n))
        self.to_layout_order = None if in_order else _const(np.argsort(order, kind="stable"))

    # ---------------------------------------------------------------- encoder
    def onehot(self, index: Any, mask: Any) -> Any:
        """Masked one-hot of every feature, concatenated: ``[B, dim]`` float32.

        Args:
            index: ``[B, n]`` category indices (floats holding integers are rounded).
            mask: ``[B, n]`` observed mask; a missing feature gets an all-zero one-hot, as
                does an index outside ``[0, cardinality)`` (what ``one_hot`` gives).
        """
        index = _as_index(index)
        mask = ops.cast(mask, "float32")
        card = self.uniform_cardinality
        if card is not None:
            hot = ops.one_hot(index, card, dtype="float32") * mask[:, :, None]
            return ops.reshape(hot, (-1, self.dim))
        # Mixed cardinalities: column d is hot when its feature's index equals its class.
        per_column = ops.take(index, self.feature_of_column, axis=1)
        hot = ops.cast(ops.equal(per_column, self.class_of_column[None, :]), "float32")
        return hot * ops.take(mask, self.feature_of_column, axis=1)

    # ---------------------------------------------------------------- decoder
    def nll(self, index: Any, logits: Any) -> Any:
        """``logsumexp(logits_j) - logits_j[index_j]`` for every feature ``j``: ``[B, n]``.

        The same value as `likelihoods.categorical_nll` per feature: the class is selected
        with a one-hot product, so an out-of-range index selects nothing (never raises).

        Args:
            index: ``[B, n]`` category indices (floats holding integers are rounded).
            logits: ``[B, dim]`` every feature's logits side by side, in layout order.
        """
        index = _as_index(index)
        parts = []
        for group in self.groups:
            block = self._block(logits, group)
            hot = ops.one_hot(_take_features(index, group), group.width, dtype=block.dtype)
            if group.valid is not None:
                hot = hot * ops.cast(group.valid, block.dtype)[None]
            parts.append(ops.logsumexp(block, axis=-1) - ops.sum(hot * block, axis=-1))
        return self._in_layout_order(parts)

    def argmax(self, logits: Any) -> Any:
        """Most likely category of every feature: ``[B, n]`` int."""
        parts = [ops.argmax(self._block(logits, group), axis=-1) for group in self.groups]
        return self._in_layout_order(parts)

    def split(self, logits: Any) -> list[Any]:
        """The flat ``[B, dim]`` logits as one ``[B, card_j]`` tensor per feature.

        Per-feature slices: for inspection and small layouts only, never in a training graph.
        """
        bounds = np.concatenate([[0], np.cumsum(self.cardinalities)]).astype(int)
        return [logits[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _block(self, logits: Any, group: _Group) -> Any:
        """A group's logits as ``[B, n, width]``, padding set to `PAD_LOGIT`."""
        if group.column_run is not None:
            start, stop = group.column_run
            flat = logits[:, start:stop]
        else:
            flat = ops.take(logits, group.columns, axis=1)
        block = ops.reshape(flat, (-1, group.n, group.width))
        if group.valid is None:
            return block
        return ops.where(group.valid[None], block, ops.cast(PAD_LOGIT, block.dtype))

    def _in_layout_order(self, parts: list[Any]) -> Any:
        out = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        if self.to_layout_order is None:
            return out
        return ops.take(out, self.to_layout_order, axis=1)


@functools.lru_cache(maxsize=64)
def plan_for(cardinalities: tuple[int, ...]) -> CategoricalPlan:
    """The (cached) plan for a layout's ``cardinalities``."""
    return CategoricalPlan(cardinalities)


def _make_group(features: np.ndarray, cards: np.ndarray, offsets: np.ndarray) -> _Group:
    width = int(cards[features].max())
    contiguous = bool(features[-1] - features[0] == len(features) - 1)
    feature_run = (int(features[0]), int(features[-1]) + 1) if contiguous else None
    uniform = bool((cards[features] == width).all())
    if contiguous and uniform:
        start = int(offsets[features[0]])
        run = (start, start + width * len(features))
        return _Group(width, _const(features), feature_run, None, run, None)
    classes = np.arange(width)
    valid = classes[None, :] < cards[features][:, None]  # [n, width]
    # Padding slots read the feature's class 0 (any valid column would do): masked anyway.
    columns = offsets[features][:, None] + np.where(valid, classes[None, :], 0)
    return _Group(
        width,
        _const(features),
        feature_run,
        _const(columns.reshape(-1)),
        None,
        None if uniform else _const(valid, np.bool_),
    )


def _take_features(x: Any, group: _Group) -> Any:
    if group.feature_run is not None:
        start, stop = group.feature_run
        return x[:, start:stop]
    return ops.take(x, group.features, axis=1)


def _as_index(index: Any) -> Any:
    return ops.cast(ops.round(ops.cast(index, "float32")), "int32")


def _const(array: np.ndarray, dtype: Any = np.int32) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype)
    out.setflags(write=False)
    return out
