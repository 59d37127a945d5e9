"""`vaepipe run` helpers: partitions, {partition} templates, the scores folder, RunRequest."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from configs import ConfigError
from pipeline.jobs.run import RunRequest, resolve_partition, scores_directory, with_partition

DAY = dt.date(2026, 3, 1)


def test_resolve_partition():
    assert resolve_partition(None) is None
    assert resolve_partition("today", today=DAY) == "2026-03-01"
    assert resolve_partition("yesterday", today=DAY) == "2026-02-28"
    assert resolve_partition("eu-west_1.v2") == "eu-west_1.v2"


@pytest.mark.parametrize("value", ["../etc", "a/b", "", "-x", "a b"])
def test_resolve_partition_refuses_unsafe_names(value):
    with pytest.raises(ConfigError, match=f"Received: {value!r}"):
        resolve_partition(value)


def test_with_partition():
    assert with_partition("gs://b/{partition}/*.csv", "2026-03-01") == "gs://b/2026-03-01/*.csv"
    assert with_partition("data/{a,b}.csv", None) == "data/{a,b}.csv"  # glob braces left alone
    assert with_partition(None, "p") is None
    with pytest.raises(ConfigError, match=r"'in/\{partition\}' uses \{partition\}: give"):
        with_partition("in/{partition}", None)


def test_scores_directory():
    assert scores_directory("out", None) == os.path.join("out", "scores")
    assert scores_directory("out", "2026-03-01") == os.path.join(
        "out", "scores", "partition=2026-03-01"
    )


def test_run_request_defaults():
    request = RunRequest(input="in.csv", output="out")
    assert (request.train_input, request.model, request.partition) == (None, None, None)
    assert (request.retrain, request.no_wait, request.bigquery_output) == (False, False, None)
    assert list(request.config) == [] and list(request.set) == []
