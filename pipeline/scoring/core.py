"""The batch scoring core, shared by the Beam job (`scoring.handler`) and the Python API.

Whole encoded chunks are scored as NumPy arrays, several chunks per model call when they are
smaller than a batch (`score_chunks`). A chunk whose model call fails is split in halves until
the failing records are isolated: they become dead letters, the rest is scored.

The model call is the model's compiled scoring function (`VAE.scoring_function`: traced once,
no Keras `predict_on_batch` set-up per call) when it has one, else its `predict_on_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.records import MODEL_ERROR, NON_FINITE_SCORE, DeadLetter, EncodedChunk, take_raw

STAGE = "score"
OUTPUT_KEYS = ("score", "reconstruction_nll", "kl", "feature_nll", "z_mean")


def score_batches(model: Any, inputs: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Deterministic score terms for `inputs`, in fixed-size (padded) batches.

    Padding the last batch keeps one traced shape, so the compiled predict function is reused
    instead of retraced for every chunk size.
    """
    call = _model_call(model)
    outs: dict[str, list] = {key: [] for key in OUTPUT_KEYS}
    inputs = np.asarray(inputs, dtype=np.float32)
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        n = len(batch)
        if n < batch_size:
            batch = np.concatenate(
                [batch, np.zeros((batch_size - n,) + batch.shape[1:], batch.dtype)]
            )
        result = call(batch)
        for key in OUTPUT_KEYS:
            outs[key].append(np.asarray(result[key])[:n])
    return {key: np.concatenate(parts) for key, parts in outs.items()}


def _model_call(model: Any):
    """The model's compiled scoring function, or `predict_on_batch` for any other model."""
    scoring_function = getattr(model, "scoring_function", None)
    return scoring_function() if callable(scoring_function) else model.predict_on_batch


@dataclass
class ScoredChunk:
    """A chunk's score terms for the rows that scored, and dead letters for those that did not."""

    chunk: EncodedChunk
    terms: dict[str, np.ndarray]
    dead: list[DeadLetter] = field(default_factory=list)


def score_chunk(model: Any, chunk: EncodedChunk, batch_size: int) -> ScoredChunk:
    """Score a chunk, isolating rows that fail or give non-finite scores."""
    ok_rows, terms, dead = _score_isolating(model, chunk, np.arange(len(chunk)), batch_size)
    return _keep_finite(chunk, ok_rows, terms, dead)


def score_chunks(model: Any, chunks: Sequence[EncodedChunk], batch_size: int) -> list[ScoredChunk]:
    """Score several chunks in shared model batches (as `score_chunk` scores each).

    Chunks of fewer rows than a batch are scored together, so a batch is not mostly padding;
    if the shared call fails, each chunk is scored on its own, which isolates the bad rows.
    """
    if len(chunks) <= 1:
        return [score_chunk(model, chunk, batch_size) for chunk in chunks]
    try:
        terms = score_batches(model, np.concatenate([c.inputs for c in chunks]), batch_size)
    except Exception:  # any model failure: score chunk by chunk, isolating the bad rows
        return [score_chunk(model, chunk, batch_size) for chunk in chunks]
    out, start = [], 0
    for chunk in chunks:
        part = {key: value[start : start + len(chunk)] for key, value in terms.items()}
        out.append(_keep_finite(chunk, np.arange(len(chunk)), part, []))
        start += len(chunk)
    return out


def _keep_finite(chunk: EncodedChunk, ok_rows: np.ndarray, terms: dict, dead: list) -> ScoredChunk:
    """The scored rows with a finite score; the others become dead letters."""
    finite = np.isfinite(terms["score"]) if len(ok_rows) else np.zeros(0, dtype=bool)
    for i in ok_rows[~finite]:
        dead.append(_dead(chunk, i, NON_FINITE_SCORE, "the model gave a non-finite score"))
    keep = ok_rows[finite]
    if len(keep) == len(chunk):  # every row scored (the usual case): no copy, no Python loop
        return ScoredChunk(chunk, terms, dead)
    kept_terms = {k: v[finite] for k, v in terms.items()}
    return ScoredChunk(_subset(chunk, keep), kept_terms, dead)


def _score_isolating(model, chunk: EncodedChunk, rows: np.ndarray, batch_size: int):
    if len(rows) == 0:  # nothing to score (an empty chunk): splitting it would never end
        return rows, _empty_terms(), []
    try:
        return rows, score_batches(model, chunk.inputs[rows], batch_size), []
    except Exception as err:  # any model failure: find the rows that cause it
        if len(rows) == 1:
            message = f"model failed on this record: {type(err).__name__}: {err}"
            return rows[:0], _empty_terms(), [_dead(chunk, rows[0], MODEL_ERROR, message)]
    half = len(rows) // 2
    parts = [
        _score_isolating(model, chunk, part, batch_size) for part in (rows[:half], rows[half:])
    ]
    ok = np.concatenate([p[0] for p in parts])
    terms = {
        k: np.concatenate([p[1][k] for p in parts if len(p[0])] or [_empty_terms()[k]])
        for k in OUTPUT_KEYS
    }
    return ok, terms, parts[0][2] + parts[1][2]


def _empty_terms() -> dict[str, np.ndarray]:
    return {key: np.zeros((0,)) for key in OUTPUT_KEYS}


def _subset(chunk: EncodedChunk, rows: np.ndarray) -> EncodedChunk:
    return EncodedChunk(
        source=chunk.source,
        record_ids=[chunk.record_ids[i] for i in rows],
        raw=take_raw(chunk.raw, rows),
        inputs=chunk.inputs[rows],
        passthrough=chunk.passthrough.iloc[rows].reset_index(drop=True),
    )


def _dead(chunk: EncodedChunk, row: int, reason: str, message: str) -> DeadLetter:
    return DeadLetter(chunk.record_ids[row], chunk.source, STAGE, reason, message, chunk.raw[row])


def exact_float32_scoring() -> None:
    """Turns TF32 off in a TensorFlow scoring worker (see `vae_model.model.exact_float32_matmuls`).

    TensorFlow runs float32 matmuls as TF32 on Ampere and newer GPUs, which makes a record's
    score depend on its batch; the switch is process-wide, so it is set where scoring starts.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
