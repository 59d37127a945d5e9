"""The training data job (Beam) on a Parquet table with a real bool column, datetimes, an
all-missing column and near-unique text, and its in-process twin: the same decisions, the
same encoding, derived from the train split alone."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from configs import load_config
from pipeline.artifacts.shards import PreparedPaths, split_mask
from pipeline.features.drift import REFERENCE_STAT
from pipeline.features.tabular_encoding import TabularEncoding
from pipeline.jobs import in_process
from pipeline.jobs.prepare import build_prepare_pipeline

ROWS = 600
SETTINGS = [
    "data.id_column=id",
    "schema.max_vocabulary=5000",
    "schema.identifier_distinct_share=1.0",  # keep `code` (one value per row) as a category
]


def parquet_table(path) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(ROWS)],
            "x": rng.normal(10.0, 2.0, ROWS),
            "flag": rng.random(ROWS) < 0.3,  # a real Parquet bool column
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(ROWS), unit="h"),
            "gone": np.full(ROWS, np.nan),
            "code": [f"k{i}" for i in range(ROWS)],
        }
    )
    frame.to_parquet(path, index=False)
    return frame


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    frame = parquet_table(root / "train.parquet")
    config = load_config([], SETTINGS)
    paths = PreparedPaths(str(root / "work"))
    with beam.Pipeline() as pipeline:
        build_prepare_pipeline(pipeline, str(root / "train.parquet"), config, paths)
    return frame, config, paths, root


def test_parquet_bools_datetimes_and_empty_columns_are_decided_and_said(prepared):
    _, _, paths, _ = prepared
    columns = json.loads(open(paths.columns).read())
    assert columns["flag"]["kind"] == "boolean" and columns["flag"]["decision"] == "modelled"
    assert columns["when"]["kind"] == "timestamp" and columns["when"]["decision"] == "left out"
    assert columns["gone"]["kind"] == "empty" and columns["gone"]["decision"] == "left out"
    assert columns["x"]["kind"] == "numeric" and columns["code"]["kind"] == "categorical"
    encoding = TabularEncoding.from_json(open(paths.encoding).read())
    assert encoding.columns == ["x", "code", "flag"]
    flag = next(s for s in encoding.categorical if s.name == "flag")
    assert flag.boolean and flag.vocabulary == ("false", "true")


def test_the_vocabulary_comes_from_the_train_split_only(prepared):
    frame, config, paths, _ = prepared
    encoding = TabularEncoding.from_json(open(paths.encoding).read())
    code = next(s for s in encoding.categorical if s.name == "code")
    train = split_mask(frame["id"].tolist(), "train", config.train)
    assert set(code.vocabulary) == set(frame["code"][train])  # no calibration value in it
    assert 0 < (~train).sum() and not set(code.vocabulary) & set(frame["code"][~train])


def test_the_statistics_are_the_train_splits_with_an_exact_drift_reference(prepared):
    frame, config, paths, _ = prepared
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        open(paths.statistics, "rb").read()
    )
    train = split_mask(frame["id"].tolist(), "train", config.train)
    assert stats.datasets[0].num_examples == train.sum()
    x = next(f for f in stats.datasets[0].features if f.path.step[0] == "x")
    [reference] = [c for c in x.custom_stats if c.name == REFERENCE_STAT]
    assert sum(b.sample_count for b in reference.histogram.buckets) == train.sum()
    names = {f.path.step[0] for f in stats.datasets[0].features}
    assert names == {"x", "code", "flag"}  # left-out columns are not profiled


def test_the_in_process_prepare_agrees_with_the_beam_job(prepared):
    _, config, paths, root = prepared
    here = in_process.prepare(str(root / "train.parquet"), config)
    assert here.encoding == TabularEncoding.from_json(open(paths.encoding).read())
    assert here.columns == json.loads(open(paths.columns).read())
    assert str(here.schema) == open(paths.schema).read()
