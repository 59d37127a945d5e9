"""The decoder as a float64 numpy function, so that compressing and decompressing agree.

An entropy decoder must rebuild exactly the probabilities the encoder used, or every symbol
after the first difference decodes to garbage. The Keras decoder runs float32 kernels whose
rounding may change with the batch, the thread count or the machine. So both sides run this
copy instead: the same weights, in float64, on the same dequantized code, with the outputs
rounded to a coarse grid (2**-24 for means, 2**-16 for log-variances and logits). A last-bit
difference between machines then changes an output only if it straddles a grid boundary
(about 1e-9 per value). A block also carries a checksum of its decoded values: a decoder that
still disagrees is caught, never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MEAN_GRID = 2.0**-24
LOG_GRID = 2.0**-16


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: 1.0507009873554805
    * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "silu": lambda x: x * 0.5 * (1.0 + np.tanh(0.5 * x)),
    "swish": lambda x: x * 0.5 * (1.0 + np.tanh(0.5 * x)),
    "gelu": _gelu,
}


@dataclass(frozen=True)
class DecoderOutputs:
    """Likelihood parameters per record: numeric mean and log-variance in the encoding's
    transformed units, and every categorical feature's logits side by side."""

    numeric_mean: np.ndarray
    numeric_log_var: np.ndarray
    logits: np.ndarray


class DecoderNet:
    """The VAE's decoder (hidden layers and likelihood heads) in float64 numpy."""

    def __init__(self, model) -> None:
        if model.activation not in _ACTIVATIONS:
            raise ValueError(
                f"compress supports models with activations {sorted(_ACTIVATIONS)}; this model "
                f"uses {model.activation!r}"
            )
        self._activation = _ACTIVATIONS[model.activation]
        self._hidden = [_dense(layer) for layer in model.decoder_hidden]
        self._mean = _dense(model.numeric_mu_head) if model.numeric_mu_head is not None else None
        self._log_var_head = (
            _dense(model.numeric_log_var_head) if model.numeric_log_var_head is not None else None
        )
        self._log_var = (
            np.asarray(model.numeric_log_var.numpy(), dtype=np.float64)
            if model.numeric_log_var is not None
            else None
        )
        self._logits = (
            _dense(model.categorical_head) if model.categorical_head is not None else None
        )
        self._clamp = (float(model.min_log_var), float(model.max_log_var))
        self.latent_dim = int(model.latent_dim)
        self.n_numeric = int(model.layout.n_numeric)

    def __call__(self, z: np.ndarray) -> DecoderOutputs:
        h = np.asarray(z, dtype=np.float64)
        for kernel, bias in self._hidden:
            h = self._activation(h @ kernel + bias)
        n = len(h)
        mean = np.zeros((n, 0))
        log_var = np.zeros((n, 0))
        if self._mean is not None:
            mean = h @ self._mean[0] + self._mean[1]
            if self._log_var_head is not None:
                log_var = h @ self._log_var_head[0] + self._log_var_head[1]
            elif self._log_var is not None:
                log_var = np.broadcast_to(self._log_var, mean.shape)
            else:
                log_var = np.zeros_like(mean)
            log_var = np.clip(log_var, *self._clamp)
        logits = h @ self._logits[0] + self._logits[1] if self._logits is not None else None
        return DecoderOutputs(
            _snap(mean, MEAN_GRID),
            _snap(log_var, LOG_GRID),
            _snap(logits, LOG_GRID) if logits is not None else np.zeros((n, 0)),
        )


def _dense(layer) -> tuple[np.ndarray, np.ndarray]:
    kernel, bias = layer.get_weights()
    return np.asarray(kernel, dtype=np.float64), np.asarray(bias, dtype=np.float64)


def _snap(values: np.ndarray, grid: float) -> np.ndarray:
    return np.rint(np.asarray(values, dtype=np.float64) / grid) * grid
