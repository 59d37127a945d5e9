"""Per-feature negative log-likelihoods, in backend-neutral ``keras.ops``."""

from __future__ import annotations

import math
from typing import Any

from keras import ops

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(x: Any, mu: Any, log_var: Any) -> Any:
    """Elementwise negative log-density of ``x`` under ``N(mu, exp(log_var))``.

    ``0.5 * (log(2*pi) + log_var + (x - mu)**2 * exp(-log_var))``, in nats.
    Callers are expected to clamp ``log_var`` first (see ``losses.py``).
    """
    return 0.5 * (_LOG_2PI + log_var + ops.square(x - mu) * ops.exp(-log_var))


def categorical_nll(index: Any, logits: Any) -> Any:
    """Negative log-probability of class ``index`` under ``softmax(logits)``.

    Computed as ``logsumexp(logits) - logits[index]``, which is stable for large
    logits. The index is selected with a one-hot product rather than a gather so that
    it never raises inside a compiled graph.

    Args:
        index: ``[B]`` class indices (ints, or floats holding integers).
        logits: ``[B, C]`` unnormalized log-probabilities.

    Returns:
        ``[B]`` NLL in nats.
    """
    num_classes = logits.shape[-1]
    index = ops.cast(ops.round(ops.cast(index, "float32")), "int32")
    onehot = ops.one_hot(index, num_classes, dtype=logits.dtype)
    return ops.logsumexp(logits, axis=-1) - ops.sum(onehot * logits, axis=-1)


def bernoulli_nll(x: Any, logits: Any) -> Any:
    """Elementwise binary cross-entropy of intensities ``x`` in ``[0, 1]`` under
    ``Bernoulli(sigmoid(logits))``, in nats.

    ``-(x * log(sigmoid(l)) + (1 - x) * log(1 - sigmoid(l))) = softplus(l) - x * l``:
    the right side never forms ``log(sigmoid(l))``, which underflows to ``-inf`` for
    large ``|l|``. For ``x`` strictly inside ``(0, 1)`` (grey pixels) this is the usual
    "Bernoulli" image likelihood: a proper NLL only for ``x`` in ``{0, 1}``, its minimum
    over ``l`` is the entropy of ``x`` (``log 2`` at ``x = 0.5``), not 0.
    """
    return ops.softplus(logits) - x * logits
