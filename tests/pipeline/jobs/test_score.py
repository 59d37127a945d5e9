"""The scoring job's parts that need no model: the run's threshold, the model fingerprint in
the codes' metadata, and the count of record ids seen more than once."""

from __future__ import annotations

import collections
import dataclasses
import json
from types import SimpleNamespace

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from configs import VaepipeConfig
from pipeline.artifacts.bundle import Calibration
from pipeline.jobs.score import CountDuplicateIds
from pipeline.scoring.calibration import threshold_for
from pipeline.scoring.outputs import MODEL_FINGERPRINT, OutputContext, code_format


def fake_bundle(target_fpr: float = 0.05) -> SimpleNamespace:
    scores = np.sort(np.random.default_rng(0).gamma(3.0, 2.0, 1000))
    calibration = Calibration(
        target_fpr=target_fpr,
        threshold=threshold_for(scores, target_fpr),
        feature_baseline=(0.0, 0.0),
        code_scale=(0.1, 0.2, 0.3),
        n_calibration=len(scores),
    )
    manifest = {"sha256": {"model.keras": "ab" * 32}}
    return SimpleNamespace(
        calibration=calibration, calibration_scores=scores, encoding=None, manifest=manifest
    )


def with_fpr(fpr: float) -> VaepipeConfig:
    config = VaepipeConfig()
    return dataclasses.replace(config, scoring=dataclasses.replace(config.scoring, target_fpr=fpr))


def test_a_target_fpr_given_at_scoring_re_derives_the_threshold():
    bundle = fake_bundle(0.05)
    same = OutputContext.from_bundle(bundle, with_fpr(0.05))
    assert same.threshold == bundle.calibration.threshold
    other = OutputContext.from_bundle(bundle, with_fpr(0.2))
    # The training rule on the same sorted scores: 20% of calibration scores lie above it.
    assert other.threshold == float(np.quantile(bundle.calibration_scores, 0.8))
    assert np.mean(bundle.calibration_scores > other.threshold) == 0.2
    assert "re-derived" in other.threshold_note and "0.2" in other.threshold_note


def test_codes_carry_the_fingerprint_of_the_model_that_wrote_them():
    ctx = OutputContext.from_bundle(fake_bundle(), VaepipeConfig())
    assert code_format(ctx.codes_schema)[MODEL_FINGERPRINT] == "ab" * 32


def _flags(ids: list[str]) -> pa.Table:
    return pa.table({"record_id": ids})


def test_duplicate_record_ids_are_counted_with_examples(tmp_path):
    path = str(tmp_path / "duplicates.json")
    tables = [_flags(["a", "b", "c", "a"]), _flags(["b", "d", "a", "e"]), _flags(["f"])]
    with BeamTestPipeline() as p:
        _ = p | beam.Create(tables) | CountDuplicateIds(path, examples=1)
    # a: 3 times, b: 2 times -> 2 ids, 3 rows beyond the first of each; first example sorted
    assert json.loads(open(path).read()) == {"ids": 2, "extra_rows": 3, "examples": ["a"]}


def test_duplicates_are_counted_across_tables_and_hash_buckets(tmp_path):
    path = str(tmp_path / "duplicates.json")
    rng = np.random.default_rng(3)
    ids = [f"id-{i}" for i in rng.integers(0, 300, 1000)]  # many repeats, in every bucket
    tables = [_flags(ids[i : i + 128]) for i in range(0, len(ids), 128)] + [_flags([])]
    with BeamTestPipeline() as p:
        _ = p | beam.Create(tables) | CountDuplicateIds(path, examples=3, buckets=4)
    counts = collections.Counter(ids)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    expected = {
        "ids": len(repeated),
        "extra_rows": sum(n - 1 for n in counts.values()),
        "examples": repeated[:3],
    }
    assert json.loads(open(path).read()) == expected


def test_a_batch_without_duplicates_reports_zero(tmp_path):
    path = str(tmp_path / "duplicates.json")
    with BeamTestPipeline() as p:
        _ = p | beam.Create([_flags(["a", "b"])]) | CountDuplicateIds(path)
    assert json.loads(open(path).read()) == {"ids": 0, "extra_rows": 0, "examples": []}
