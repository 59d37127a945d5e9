"""Records drawn from the model: codes from the prior N(0, I), decoded to the data's form.

Shared by `vaepipe sample` (pipeline.jobs.sample, which writes them) and the report (which
draws a few thousand on the fly when no samples are given).

Two ways to turn a code into a record: `likely=True` takes the decoder's most likely record
(`VAE.reconstruct_from_code`: numeric means, the arg-max category); the default draws the
record from the decoder's likelihood p(x | z) (numbers from their Gaussian, categories from
their softmax). Only draws reproduce the data's spread and its rarer categories: the arg-max
of a 70/30 category is the majority value for nearly every code. Image pixels are always the
mean intensity (a 0/1 draw per pixel would be noise, not a picture).
"""

from __future__ import annotations

import numpy as np

DECODE_BATCH = 8192


def prior_codes(latent_dim: int, rows: int, seed: int) -> np.ndarray:
    """`rows` codes from N(0, I), float32 `[rows, latent_dim]`; the same for the same seed."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0. Received: {rows}")
    return np.random.default_rng(seed).standard_normal((rows, latent_dim)).astype(np.float32)


def decoded_prior(model, rows: int, seed: int, likely: bool = False) -> np.ndarray:
    """Packed values `[rows, width]` (numbers in encoded units, category indices,
    intensities) of `rows` records decoded from prior codes; see the module docstring."""
    codes = prior_codes(model.latent_dim, rows, seed)
    rng = np.random.default_rng([seed, 1])  # the likelihood draws: apart from the codes'
    parts = []
    for start in range(0, rows, DECODE_BATCH):
        z = codes[start : start + DECODE_BATCH]
        if likely:
            parts.append(np.asarray(model.reconstruct_from_code(z), np.float32))
        else:
            parts.append(_draw(model, z, rng))
    if not parts:
        return np.zeros((0, model.layout.width), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def _draw(model, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One record per code from p(x | z), in `reconstruct_from_code`'s packed convention."""
    from keras import ops

    out = {k: np.asarray(ops.convert_to_numpy(v), np.float64) for k, v in model.decode(z).items()}
    columns = []
    mu = out["numeric_mu"]
    if mu.shape[1]:
        sigma = np.exp(0.5 * out["numeric_log_var"])
        columns.append(mu + sigma * rng.standard_normal(mu.shape))
    logits, start = out["categorical_logits"], 0
    for cardinality in model.layout.cardinalities:
        block = logits[:, start : start + cardinality]
        start += cardinality
        # Gumbel-max: the arg-max of logits plus Gumbel noise is a draw from their softmax.
        gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, block.shape)))
        columns.append(np.argmax(block + gumbel, axis=1).astype(np.float64)[:, None])
    if out["bernoulli_logits"].shape[1]:
        columns.append(1.0 / (1.0 + np.exp(-out["bernoulli_logits"])))
    return np.concatenate(columns, axis=1).astype(np.float32)
