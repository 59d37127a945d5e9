"""pipeline.scoring.handler: RunInference with the bundle as the model gives, in a real
DirectRunner pipeline, the same score terms as scoring the chunk directly."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.artifacts.bundle import Bundle, load_bundle
from pipeline.core.records import NON_FINITE_SCORE, EncodedChunk
from pipeline.scoring.core import OUTPUT_KEYS, score_chunk
from pipeline.scoring.handler import BundleModelHandler

BATCH = 32


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame(
        {
            "a": a,
            "b": 2 * a + 0.3 * rng.normal(size=n),
            "c": rng.choice(["x", "y", "z"], n).astype(object),
        }
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A bundle from a tiny in-process fit, saved (the detector's own folder goes with it)."""
    import vaepipe

    detector = vaepipe.fit(frame(400, seed=0), epochs=2, hidden_units=[16], latent_dim=2)
    return detector.save(tmp_path_factory.mktemp("handler") / "bundle")


@pytest.fixture(scope="module")
def bundle(model_dir) -> Bundle:
    return load_bundle(model_dir)


def encoded(bundle: Bundle, n: int, seed: int, source: str = "in.csv") -> EncodedChunk:
    rows = frame(n, seed)
    return EncodedChunk(
        source=source,
        record_ids=[f"{source}:{i}" for i in range(n)],
        raw=[f"raw{i}" for i in range(n)],
        inputs=bundle.encoding.encode(rows),
        passthrough=pd.DataFrame({"label": [str(i % 2) for i in range(n)]}),
    )


def test_load_model_returns_the_verified_bundle_with_the_mc_setting(model_dir):
    loaded = BundleModelHandler(model_dir, BATCH, mc_samples=3).load_model()
    assert isinstance(loaded, Bundle) and loaded.directory == str(model_dir)
    assert loaded.encoding.columns == ["a", "b", "c"]
    assert loaded.model.score_mc_samples == 3


def test_run_inference_scores_each_chunk_as_score_chunk_does(model_dir, bundle):
    handler = BundleModelHandler(model_dir, BATCH)
    chunks = [encoded(bundle, 50, seed=1), encoded(bundle, 7, seed=2, source="b.csv")]
    results = list(handler.run_inference(chunks, handler.load_model()))
    assert len(results) == 2
    for chunk, result in zip(chunks, results, strict=True):
        direct = score_chunk(bundle.scorer, chunk, BATCH)
        assert result.chunk.record_ids == chunk.record_ids and result.dead == []
        for key in OUTPUT_KEYS:
            np.testing.assert_allclose(result.terms[key], direct.terms[key], rtol=1e-6, atol=1e-6)
    assert handler.get_num_bytes(chunks) == sum(c.inputs.nbytes for c in chunks)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 1}


def _summary(scored) -> tuple:
    """What a scored chunk says, as plain values beam's equal_to can compare."""
    return (
        scored.chunk.source,
        tuple(scored.chunk.record_ids),
        tuple(np.round(scored.terms["score"], 4)),
        tuple(sorted((d.record_id, d.reason) for d in scored.dead)),
    )


def test_run_inference_in_a_pipeline_matches_direct_scoring(model_dir, bundle):
    good = encoded(bundle, 40, seed=3)
    bad = encoded(bundle, 6, seed=4, source="bad.csv")
    bad.inputs[2, 0] = np.inf  # an observed infinite value: a dead letter, not a crash
    expected = []
    for chunk in (good, bad):
        expected.append(_summary(score_chunk(bundle.scorer, chunk, BATCH)))
    assert expected[1][3] == (("bad.csv:2", NON_FINITE_SCORE),)

    with BeamTestPipeline() as p:
        scored = (
            p
            | beam.Create([good, bad])
            | RunInference(BundleModelHandler(model_dir, BATCH))
            | beam.Map(_summary)
        )
        assert_that(scored, equal_to(expected))
