"""Shared fixtures for the pipeline tests: chunk builders and one real TFDV statistics run.

Helpers are handed out as fixtures (importing from a conftest.py is ambiguous when several
test folders have one). The TFDV run happens once per session: one small Beam pipeline computes
the statistics that the statistics and encoding tests read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL, NUMERIC, RecordChunk
from pipeline.features.statistics import ComputeStatistics, categorical_int_schema, stats_options


def make_chunk(columns: dict, source: str = "src.csv", ids=None, raw=None) -> RecordChunk:
    """A RecordChunk from column lists; ids default to `<source>:<n>` and raw to `raw<n>`."""
    frame = pd.DataFrame(
        {name: pd.Series(values, dtype=object) for name, values in columns.items()}
    )
    n = len(frame)
    ids = list(ids) if ids is not None else [f"{source}:{i + 1}" for i in range(n)]
    raw = list(raw) if raw is not None else [f"raw{i + 1}" for i in range(n)]
    return RecordChunk(source, ids, raw, frame)


@pytest.fixture(scope="session")
def chunk_of():
    """The `make_chunk` function."""
    return make_chunk


# ------------------------------------------------------------------ the TFDV statistics run
N_ROWS = 2000
VOCAB_COUNTS = {"a": 1000, "b": 600, "c": 399}  # + 1 missing = N_ROWS
INT_COUNTS = {"0": 900, "1": 700, "2": 400}
KINDS = {
    "c": CATEGORICAL,
    "empty": NUMERIC,
    "i": INT_CATEGORICAL,
    "k": NUMERIC,
    "x": NUMERIC,
}


@dataclasses.dataclass
class StatsRun:
    """The typed training frame, its kinds and the TFDV statistics computed on it.

    plain: default options (what training uses); with_int_schema: TFDV told that `i` is an
    integer category (so it gets top values); drift: another batch whose categories for `c`
    were never seen in training.
    """

    frame: pd.DataFrame
    kinds: dict
    plain: statistics_pb2.DatasetFeatureStatisticsList
    with_int_schema: statistics_pb2.DatasetFeatureStatisticsList
    drift: statistics_pb2.DatasetFeatureStatisticsList


def typed_training_frame(seed: int = 7) -> pd.DataFrame:
    """Typed columns as `apply_kinds` produces them (float64 numeric, str/None categories)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, N_ROWS)
    x[::50] = np.nan  # 40 missing
    c = [v for v, n in VOCAB_COUNTS.items() for _ in range(n)] + [None]
    i = [v for v, n in INT_COUNTS.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "c": np.array(c, dtype=object)[rng.permutation(N_ROWS)],
            "empty": np.full(N_ROWS, np.nan),
            "i": np.array(i, dtype=object)[rng.permutation(N_ROWS)],
            "k": np.full(N_ROWS, 5.0),
            "x": x,
        }
    )


def _write_proto(stats, path: str) -> None:
    # Builtins only: Beam pickles this function, and under the full suite another conftest
    # module shares the name `conftest`, so this module's globals may not travel with it.
    with open(path, "wb") as handle:
        handle.write(stats.SerializeToString())


def _read_stats(path: Path) -> statistics_pb2.DatasetFeatureStatisticsList:
    return statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())


@pytest.fixture(scope="session")
def stats_run(tmp_path_factory: pytest.TempPathFactory) -> StatsRun:
    out = tmp_path_factory.mktemp("tfdv_stats")
    frame = typed_training_frame()
    ids = [f"train:{n}" for n in range(N_ROWS)]
    whole = RecordChunk("train.csv", ids, [""] * N_ROWS, frame)
    half = N_ROWS // 2
    chunks = [whole.take(np.arange(half)), whole.take(np.arange(half, N_ROWS))]
    drift_frame = frame.iloc[:200].copy()
    drift_frame["c"] = np.array(["new1", "new2"] * 100, dtype=object)
    drift = RecordChunk("drift.csv", ids[:200], [""] * 200, drift_frame)

    with BeamTestPipeline() as p:
        train = p | "CreateTrain" >> beam.Create(chunks)
        plain = train | "Plain" >> ComputeStatistics(KINDS, stats_options(10))
        with_int = train | "WithInt" >> ComputeStatistics(
            KINDS, stats_options(10, categorical_int_schema(KINDS))
        )
        drifted = (
            p
            | "CreateDrift" >> beam.Create([drift])
            | "Drift" >> ComputeStatistics(KINDS, stats_options(10))
        )
        for name, stats in (("plain", plain), ("with_int", with_int), ("drift", drifted)):
            _ = stats | f"Write_{name}" >> beam.Map(_write_proto, str(out / name))

    return StatsRun(
        frame=frame,
        kinds=dict(KINDS),
        plain=_read_stats(out / "plain"),
        with_int_schema=_read_stats(out / "with_int"),
        drift=_read_stats(out / "drift"),
    )
