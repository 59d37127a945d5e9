"""Scoring encoded chunks with a real (tiny, untrained) VAE, isolating rows that fail."""

from __future__ import annotations

import types

import keras
import numpy as np
import pandas as pd
import pytest

from pipeline.core.records import MODEL_ERROR, NON_FINITE_SCORE, EncodedChunk
from pipeline.features.tabular_encoding import CategoricalSpec, NumericSpec, TabularEncoding
from pipeline.scoring.core import (
    OUTPUT_KEYS,
    ScoredChunk,
    score_batches,
    score_chunk,
    score_chunks,
)
from pipeline.scoring.handler import BundleModelHandler
from vae_model import VAE

ENCODING = TabularEncoding(
    numeric=(NumericSpec("bytes", 100.0, 20.0), NumericSpec("temp", 0.0, 1.0)),
    categorical=(CategoricalSpec("proto", ("tcp", "udp")),),
)
WIDTH = len(ENCODING.columns)
LATENT = 2
BATCH = 8
SENTINEL = 12345.0


@pytest.fixture(scope="module")
def model() -> VAE:
    keras.utils.set_random_seed(0)
    return VAE(ENCODING.layout(), latent_dim=LATENT, hidden_units=(8,), seed=0)


def make_chunk(n: int, seed: int = 0) -> EncodedChunk:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "bytes": rng.normal(100.0, 20.0, n),
            "temp": rng.normal(0.0, 1.0, n),
            "proto": rng.choice(["tcp", "udp", "sctp"], n).astype(object),
        }
    )
    frame.loc[::5, "temp"] = np.nan  # some missing values: legitimate, must score
    return EncodedChunk(
        source="in.csv",
        record_ids=[f"r{i}" for i in range(n)],
        raw=[f"raw{i}" for i in range(n)],
        inputs=ENCODING.encode(frame),
        passthrough=pd.DataFrame({"label": [f"L{i}" for i in range(n)]}),
    )


class FailsOnSentinel:
    """The real VAE behind a `predict_on_batch` that raises when SENTINEL is in the batch.

    A stand-in for a model that crashes on some records: the rows are real inputs, the scores
    of every other row come from the real model.
    """

    def __init__(self, model: VAE):
        self.model = model
        self.calls = 0

    def predict_on_batch(self, x):
        self.calls += 1
        if (x == SENTINEL).any():
            raise ValueError("sentinel value in batch")
        return self.model.predict_on_batch(x)


def assert_accounted(chunk: EncodedChunk, scored: ScoredChunk) -> None:
    """Every row is scored or dead-lettered, exactly once."""
    dead_ids = [d.record_id for d in scored.dead]
    assert len(scored.chunk) + len(dead_ids) == len(chunk)
    assert sorted(scored.chunk.record_ids + dead_ids) == sorted(chunk.record_ids)
    for key in OUTPUT_KEYS:
        assert len(scored.terms[key]) == len(scored.chunk)


# ---------------------------------------------------------------------------- scoring


def test_score_batches_pads_to_a_fixed_shape_and_returns_every_row(model):
    x = make_chunk(13).inputs
    terms = score_batches(model, x, BATCH)
    assert terms["score"].shape == (13,)
    assert terms["feature_nll"].shape == (13, WIDTH)
    assert terms["z_mean"].shape == (13, LATENT)
    whole = score_batches(model, x, 16)
    for key in OUTPUT_KEYS:
        np.testing.assert_allclose(terms[key], whole[key], rtol=1e-5, atol=1e-5)
    # score = reconstruction NLL + KL, and the reconstruction NLL sums the features.
    np.testing.assert_allclose(terms["score"], terms["reconstruction_nll"] + terms["kl"], rtol=1e-5)
    np.testing.assert_allclose(
        terms["reconstruction_nll"], terms["feature_nll"].sum(axis=1), rtol=1e-5, atol=1e-5
    )


def test_score_chunk_scores_all_finite_rows_in_order(model):
    chunk = make_chunk(11)
    scored = score_chunk(model, chunk, BATCH)
    assert scored.dead == []
    assert scored.chunk.record_ids == chunk.record_ids
    assert scored.chunk.passthrough["label"].tolist() == chunk.passthrough["label"].tolist()
    np.testing.assert_array_equal(scored.chunk.inputs, chunk.inputs)
    assert np.isfinite(scored.terms["score"]).all()
    assert_accounted(chunk, scored)


def test_non_finite_inputs_become_non_finite_score_dead_letters(model):
    chunk = make_chunk(12)
    chunk.inputs[2, 0] = np.inf  # observed numeric value (mask 1)
    chunk.inputs[7, 1] = np.nan
    chunk.inputs[7, WIDTH + 1] = 1.0  # mark it observed
    scored = score_chunk(model, chunk, BATCH)

    assert sorted((d.record_id, d.reason) for d in scored.dead) == [
        ("r2", NON_FINITE_SCORE),
        ("r7", NON_FINITE_SCORE),
    ]
    assert {d.raw for d in scored.dead} == {"raw2", "raw7"}
    assert all(d.stage == "score" and d.source == "in.csv" for d in scored.dead)
    keep = [i for i in range(12) if i not in (2, 7)]
    assert scored.chunk.record_ids == [f"r{i}" for i in keep]
    assert scored.chunk.passthrough["label"].tolist() == [f"L{i}" for i in keep]
    assert np.isfinite(scored.terms["score"]).all()
    # The other rows' scores are what the model gives them without the bad rows around.
    alone = score_batches(model, chunk.inputs[keep], BATCH)
    np.testing.assert_allclose(scored.terms["score"], alone["score"], rtol=1e-5, atol=1e-5)
    assert_accounted(chunk, scored)


def test_missing_values_are_not_non_finite(model):
    chunk = make_chunk(6)
    chunk.inputs[3, WIDTH:] = 0.0  # a record with every value missing still scores
    chunk.inputs[3, :WIDTH] = 0.0
    scored = score_chunk(model, chunk, BATCH)
    assert scored.dead == [] and len(scored.chunk) == 6


def test_score_batches_uses_the_models_compiled_scoring_function(model):
    x = make_chunk(10).inputs
    terms = score_batches(model, x, BATCH)
    direct = keras.ops.convert_to_numpy(model.scoring_function()(x[:BATCH])["score"])
    np.testing.assert_allclose(terms["score"][:BATCH], direct, rtol=1e-6)
    # A model with only predict_on_batch (any Keras model) is scored through it.
    np.testing.assert_allclose(
        score_batches(FailsOnSentinel(model), x, BATCH)["score"], terms["score"], rtol=1e-6
    )


def test_score_chunks_shares_batches_and_scores_as_score_chunk_does(model):
    chunks = [make_chunk(3, seed=1), make_chunk(6, seed=2), make_chunk(2, seed=3)]
    chunks[1].inputs[4, 0] = np.inf  # an observed infinite value: a dead letter of chunk 1
    calls = FailsOnSentinel(model)
    scored = score_chunks(calls, chunks, BATCH)
    assert calls.calls == 2  # 11 rows in batches of 8, not one call (or more) per chunk
    assert [len(s.chunk) for s in scored] == [3, 5, 2]
    assert [d.record_id for d in scored[1].dead] == ["r4"]
    assert scored[1].dead[0].reason == NON_FINITE_SCORE
    for chunk, result in zip(chunks, scored, strict=True):
        assert_accounted(chunk, result)
        alone = score_chunk(model, chunk, BATCH)
        assert result.chunk.record_ids == alone.chunk.record_ids
        for key in OUTPUT_KEYS:
            np.testing.assert_allclose(result.terms[key], alone.terms[key], rtol=1e-5, atol=1e-5)


def test_score_chunks_falls_back_to_isolating_each_chunk(model):
    chunks = [make_chunk(4, seed=1), make_chunk(5, seed=2)]
    chunks[1].inputs[2, 0] = SENTINEL
    scored = score_chunks(FailsOnSentinel(model), chunks, BATCH)
    assert scored[0].dead == [] and len(scored[0].chunk) == 4
    assert [(d.record_id, d.reason) for d in scored[1].dead] == [("r2", MODEL_ERROR)]
    assert scored[1].chunk.record_ids == ["r0", "r1", "r3", "r4"]


# -------------------------------------------------------------------------- bisection


@pytest.mark.parametrize("bad_rows", [[5], [0, 13], [3, 4, 5, 6], list(range(16))])
def test_rows_that_make_the_model_raise_are_isolated(model, bad_rows):
    chunk = make_chunk(16)
    for i in bad_rows:
        chunk.inputs[i, 0] = SENTINEL
    failing = FailsOnSentinel(model)
    scored = score_chunk(failing, chunk, BATCH)

    assert sorted(d.record_id for d in scored.dead) == sorted(f"r{i}" for i in bad_rows)
    for letter in scored.dead:
        assert letter.reason == MODEL_ERROR and letter.stage == "score"
        assert letter.message == (
            "model failed on this record: ValueError: sentinel value in batch"
        )
        assert letter.raw == f"raw{letter.record_id[1:]}"
    keep = [i for i in range(16) if i not in bad_rows]
    assert scored.chunk.record_ids == [f"r{i}" for i in keep]  # order is kept
    assert_accounted(chunk, scored)
    if keep:
        alone = score_batches(model, chunk.inputs[keep], BATCH)
        for key in OUTPUT_KEYS:
            np.testing.assert_allclose(scored.terms[key], alone[key], rtol=1e-5, atol=1e-5)
    # Bisection: a handful of model calls per bad row, not one call per row.
    if len(bad_rows) == 1:
        assert failing.calls <= 2 * int(np.log2(16)) + 1


def test_empty_chunk_scores_to_nothing(model):
    chunk = make_chunk(3)
    empty = EncodedChunk("in.csv", [], [], chunk.inputs[:0], chunk.passthrough.iloc[:0])
    scored = score_chunk(model, empty, BATCH)
    assert len(scored.chunk) == 0 and scored.dead == []


# ---------------------------------------------------------------------------- handler


def test_handler_scores_each_chunk_with_the_bundle_model(model):
    handler = BundleModelHandler("unused-dir", batch_size=BATCH)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 1}
    assert handler.share_model_across_processes() is False
    chunks = [make_chunk(5, seed=1), make_chunk(9, seed=2)]
    # A loaded bundle: the handler scores with .scorer (the model, or the ensemble of it and
    # its members).
    bundle = types.SimpleNamespace(model=model, scorer=model)
    results = handler.run_inference(chunks, bundle)
    assert [len(r.chunk) for r in results] == [5, 9]
    assert [r.chunk.record_ids for r in results] == [c.record_ids for c in chunks]


def test_handler_batches_as_many_chunks_as_a_call_takes(model):
    handler = BundleModelHandler("unused-dir", batch_size=BATCH, chunks_per_call=3)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 3}
    chunks = [make_chunk(5, seed=1), make_chunk(9, seed=2), make_chunk(1, seed=3)]
    results = handler.run_inference(chunks, types.SimpleNamespace(model=model, scorer=model))
    assert [r.chunk.record_ids for r in results] == [c.record_ids for c in chunks]
    with pytest.raises(ValueError, match="chunks_per_call must be positive. Received: 0"):
        BundleModelHandler("unused-dir", batch_size=BATCH, chunks_per_call=0)


def test_handler_measures_a_batch_by_its_model_input_without_pickling_it():
    handler = BundleModelHandler("unused-dir", batch_size=BATCH)
    chunks = [make_chunk(5, seed=1), make_chunk(9, seed=2)]
    assert handler.get_num_bytes(chunks) == sum(c.inputs.nbytes for c in chunks)
    assert handler.get_num_bytes(chunks) == 14 * chunks[0].inputs.shape[1] * 4
