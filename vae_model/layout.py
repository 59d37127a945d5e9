"""Feature layout and the packed-input contract shared with the pipeline.

A batch of records reaches the model as one float32 matrix ``x`` of shape
``[B, 2 * width]``:

* columns ``[0, width)`` hold the values in layout order: numeric features first
  (standardized value, 0.0 where missing), then categorical features (the category
  index as a float in ``[0, cardinality)``, 0.0 where missing), then Bernoulli features
  (an intensity in ``[0, 1]``, e.g. a pixel; 0.0 where missing);
* columns ``[width, 2 * width)`` hold the observed mask in the same order
  (1.0 observed, 0.0 missing).

Keeping values and mask in one dense tensor keeps the model single-input, which makes
``tf.data`` / numpy feeding, saving and serving trivial on every backend.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Names and order of the features the model sees.

    Attributes:
        numeric: Names of the numeric (standardized, real-valued) features.
        categorical: ``(name, cardinality)`` pairs; the cardinality INCLUDES the
            out-of-vocabulary bucket, so valid indices are ``0 .. cardinality - 1``.
        bernoulli: Names of the features modelled as Bernoulli intensities in ``[0, 1]``
            (binary cross-entropy on the value; image pixels).
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[tuple[str, int], ...] = ()
    bernoulli: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Coerce lists (e.g. from JSON) to tuples so the layout stays hashable.
        numeric = tuple(self.numeric)
        categorical = tuple((name, card) for name, card in self.categorical)
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "categorical", categorical)
        object.__setattr__(self, "bernoulli", tuple(self.bernoulli))
        self._validate()

    def _validate(self) -> None:
        names = self.feature_names
        if not names:
            raise ValueError(
                "FeatureLayout needs at least one feature. "
                f"Received: numeric={self.numeric}, categorical={self.categorical}, "
                f"bernoulli={self.bernoulli}"
            )
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"Feature names must be non-empty strings. Received: name={name!r}"
                )
        # Counter, not list.count: an image layout has thousands of names.
        duplicates = sorted(name for name, n in Counter(names).items() if n > 1)
        if duplicates:
            raise ValueError(f"Feature names must be unique. Received duplicates: {duplicates}")
        for name, card in self.categorical:
            if isinstance(card, bool) or not isinstance(card, int | np.integer) or card < 2:
                raise ValueError(
                    f"cardinality must be >= 2. Received: cardinality={card!r} "
                    f"for feature {name!r}"
                )

    @property
    def n_numeric(self) -> int:
        """Number of numeric features."""
        return len(self.numeric)

    @property
    def n_categorical(self) -> int:
        """Number of categorical features."""
        return len(self.categorical)

    @property
    def n_bernoulli(self) -> int:
        """Number of Bernoulli (intensity) features."""
        return len(self.bernoulli)

    @property
    def width(self) -> int:
        """Number of features (= number of value columns = number of mask columns)."""
        return self.n_numeric + self.n_categorical + self.n_bernoulli

    @property
    def bernoulli_start(self) -> int:
        """Column of the first Bernoulli feature in the packed values."""
        return self.n_numeric + self.n_categorical

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in packed order: numeric, categorical, then Bernoulli."""
        return self.numeric + tuple(name for name, _ in self.categorical) + self.bernoulli

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Cardinality of each categorical feature, in layout order."""
        return tuple(int(card) for _, card in self.categorical)

    @property
    def input_dim(self) -> int:
        """Width of the packed model input (values + mask)."""
        return 2 * self.width

    @property
    def onehot_dim(self) -> int:
        """Total width of all categorical one-hot encodings."""
        return sum(self.cardinalities)

    def to_config(self) -> dict[str, Any]:
        """Returns a JSON-serializable dict; inverse of `from_config`.

        ``bernoulli`` appears only when the layout has such features, so a tabular
        layout's config (and every model saved with one) is what it was before the
        group existed.
        """
        config: dict[str, Any] = {
            "numeric": list(self.numeric),
            "categorical": [[name, int(card)] for name, card in self.categorical],
        }
        if self.bernoulli:
            config["bernoulli"] = list(self.bernoulli)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FeatureLayout:
        """Builds a layout from the output of `to_config` (lists or tuples); a config
        without ``bernoulli`` (saved before the group existed) has none."""
        unknown = set(config) - {"numeric", "categorical", "bernoulli"}
        if unknown:
            raise ValueError(f"Unknown FeatureLayout config keys. Received: {sorted(unknown)}")
        return cls(
            numeric=tuple(config.get("numeric", ())),
            categorical=tuple((name, card) for name, card in config.get("categorical", ())),
            bernoulli=tuple(config.get("bernoulli", ())),
        )


def pack(values: Any, mask: Any) -> Any:
    """Concatenates values ``[B, width]`` and mask ``[B, width]`` into ``[B, 2*width]``.

    Numpy (or list) inputs give a float32 numpy array; backend tensors give a backend
    tensor, so the helper works both in the pipeline (numpy) and inside graphs.

    Args:
        values: Feature values in layout order.
        mask: Observed mask in layout order (1.0 observed, 0.0 missing).

    Returns:
        The packed float32 input.
    """
    if isinstance(values, np.ndarray | list) and isinstance(mask, np.ndarray | list):
        values = np.asarray(values, dtype=np.float32)
        mask = np.asarray(mask, dtype=np.float32)
        if values.shape != mask.shape:
            raise ValueError(
                "values and mask must have the same shape. "
                f"Received: values.shape={values.shape}, mask.shape={mask.shape}"
            )
        return np.concatenate([values, mask], axis=-1)
    from keras import ops  # Deferred: keeps numpy-only users off the backend import.

    return ops.concatenate(
        [ops.cast(values, "float32"), ops.cast(mask, "float32")],
        axis=-1,
    )


def unpack(x: Any, layout: FeatureLayout) -> tuple[Any, Any]:
    """Splits a packed input into ``(values, mask)``, each ``[B, width]``.

    Works on numpy arrays and backend tensors alike (plain slicing).
    """
    width = layout.width
    last = x.shape[-1]
    if last is not None and last != 2 * width:
        raise ValueError(
            f"Packed input must have 2 * width = {2 * width} columns for this layout. "
            f"Received: shape={tuple(x.shape)}"
        )
    return x[..., :width], x[..., width:]


def validate_packed(x: np.ndarray, layout: FeatureLayout) -> None:
    """Checks a numpy packed batch against the contract; raises ValueError if broken.

    Meant for pipeline tests and debugging: the model itself cannot raise on bad data
    inside a compiled graph (an out-of-range category would silently get an all-zero
    one-hot), so check at the producer.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != layout.input_dim:
        raise ValueError(
            f"Expected a [B, {layout.input_dim}] packed batch. Received: shape={x.shape}"
        )
    values, mask = unpack(x, layout)
    if not np.isin(mask, (0.0, 1.0)).all():
        raise ValueError("Mask columns must be 0.0 or 1.0.")
    observed = mask > 0
    if not np.isfinite(values[observed]).all():
        raise ValueError("Observed values must be finite.")
    for j, (name, card) in enumerate(layout.categorical):
        col = layout.n_numeric + j
        idx = values[observed[:, col], col]
        bad = (idx < 0) | (idx >= card) | (idx != np.round(idx))
        if bad.any():
            raise ValueError(
                f"Categorical feature {name!r} needs integer indices in [0, {card}). "
                f"Received: {idx[bad][:5].tolist()}"
            )
    start = layout.bernoulli_start
    intensities = values[:, start:][observed[:, start:]]
    if ((intensities < 0) | (intensities > 1)).any():
        raise ValueError("Bernoulli features need intensities in [0, 1].")
