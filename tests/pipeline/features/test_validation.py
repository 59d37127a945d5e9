"""ValidationReport under the warn/fail policies; the flag-rate alarm; ValidateBatch's sampled
schema check on the DirectRunner."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import yaml
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from tensorflow_metadata.proto.v0 import statistics_pb2

from configs import load_config
from configs.loader import from_dict
from configs.schema import DataConfig, SchemaConfig
from pipeline import kinds
from pipeline.artifacts.bundle import CONFIG_FILE, load_bundle
from pipeline.features.validation import (
    STATISTICS,
    ValidateBatch,
    ValidationReport,
    flag_rate_alarm,
    read_report,
)

DRIFTED = {"feature": "x", "measure": "js", "value": 0.5, "threshold": 0.1, "drifted": True}
STEADY = {"feature": "y", "measure": "js", "value": 0.01, "threshold": 0.1, "drifted": False}
REPORT = ValidationReport(["x: unexpected string values"], [DRIFTED, STEADY])


def test_warn_policies_fail_nothing():
    assert REPORT.failures(load_config()) == []
    assert REPORT.warnings() == [
        "schema anomaly: x: unexpected string values",
        "drift: x js = 0.5000 (threshold 0.1)",
    ]


def test_on_anomaly_fail_fails_on_anomalies_only():
    config = load_config(overrides=["schema.on_anomaly=fail"])
    assert REPORT.failures(config) == ["schema anomaly: x: unexpected string values"]


def test_on_drift_fail_fails_on_drifted_features_only():
    config = load_config(overrides=["schema.on_drift=fail"])
    assert REPORT.failures(config) == ["drift: x js = 0.5000 (threshold 0.1)"]


def test_drift_line_names_the_test_when_there_is_one():
    row = DRIFTED | {"p_value": 1e-9, "rows": 500}
    (line,) = ValidationReport([], [row]).warnings()
    assert line == "drift: x js = 0.5000 (threshold 0.1, G-test p = 1.0e-09 on 500 rows)"


def test_warnings_are_cut_to_max_chars():
    (line,) = ValidationReport(["v" * 1000]).warnings(max_chars=50)
    assert line == ("schema anomaly: " + "v" * 1000)[:50] + " ..."


def test_report_json_round_trip(tmp_path):
    (tmp_path / "validation_report.json").write_text(REPORT.to_json())
    assert read_report(str(tmp_path)) == REPORT
    assert read_report(str(tmp_path / "none")) == ValidationReport()


def test_flag_rate_alarm():
    assert flag_rate_alarm(10, 1000, 10, 1000, 0.001) is None
    message = flag_rate_alarm(200, 1000, 10, 1000, 0.001)
    assert message.startswith("flag rate 20.00% (200 of 1000) is far above the 1.00% of the")
    assert flag_rate_alarm(0, 0, 10, 1000, 0.001) is None
    assert flag_rate_alarm(5, 10, 0, 0, 0.001) is None


# ------------------------------------------- ValidateBatch on the DirectRunner (real TFDV)


def _validate(model_dir, csv, out_dir, sample_rate=None, **schema_settings):
    """Run the real ValidateBatch over a CSV with the bundle's config at the default sampling
    (data.chunk_rows 4096, as shipped); the report and the row count TFDV saw."""
    bundle = load_bundle(str(model_dir), load_model=False)
    config = from_dict(yaml.safe_load((model_dir / CONFIG_FILE).read_text()))
    defaults = SchemaConfig()
    schema = dataclasses.replace(
        config.schema,
        validation_sample_rate=defaults.validation_sample_rate,
        validation_min_rows=defaults.validation_min_rows,
        **schema_settings,
    )
    data = dataclasses.replace(config.data, chunk_rows=DataConfig().chunk_rows)
    config = dataclasses.replace(config, schema=schema, data=data)
    with BeamTestPipeline() as root:
        typed, _ = kinds.get("tabular").read_typed(root, str(csv), bundle.encoding, config)
        _ = typed | ValidateBatch(
            bundle, config, str(out_dir), write_statistics=True, sample_rate=sample_rate
        )
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        (out_dir / STATISTICS).read_bytes()
    )
    return read_report(str(out_dir)), stats.datasets[0].num_examples


def _write_rows(data_dir, path, rows: int, seed: int = 0):
    """`rows` clean rows (normal.csv repeated, each copy with its own ids), seeded-shuffled."""
    normal = pd.read_csv(data_dir / "normal.csv", dtype=str, keep_default_na=False)
    copies = []
    for k in range(-(-rows // len(normal))):
        copy = normal.copy()
        copy["id"] = copy["id"] + f"-{k}"
        copies.append(copy)
    frame = pd.concat(copies).sample(frac=1.0, random_state=seed).head(rows)
    frame.to_csv(path, index=False)
    return frame


def test_a_small_clean_batch_is_checked_whole_and_raises_no_anomaly(model_dir, data_dir, tmp_path):
    _write_rows(data_dir, tmp_path / "small.csv", 40)
    report, checked = _validate(model_dir, tmp_path / "small.csv", tmp_path / "out")
    assert checked == 40  # under the floor: every row, never an empty sample
    assert report.schema_anomalies == []


def test_a_large_batch_is_sampled_and_an_anomaly_in_many_rows_is_reported(
    model_dir, data_dir, tmp_path
):
    frame = _write_rows(data_dir, tmp_path / "rows.csv", 8000)
    bad = np.random.default_rng(3).random(len(frame)) < 0.05  # 5% of rows: an unseen region
    frame.loc[bad, "region"] = "atlantis"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    report, checked = _validate(model_dir, tmp_path / "bad.csv", tmp_path / "out")
    # Chunks of 4096 and 3904 rows keep ceil(0.1 x 4096) = 410 and the floor, 400.
    assert checked == 410 + 400
    assert [line.split(":")[0] for line in report.schema_anomalies] == ["region"]
    assert "atlantis" in report.schema_anomalies[0]
    # Drift counts every row: the unseen value's share is measured on the whole batch.
    (region,) = (row for row in report.drift if row["feature"] == "region")
    assert region["rows"] == (frame["region"] != "").sum()  # every row with a region


def test_validate_checks_every_row_and_a_rerun_checks_the_same_sample(
    model_dir, data_dir, tmp_path
):
    _write_rows(data_dir, tmp_path / "rows.csv", 5000)
    _, full = _validate(model_dir, tmp_path / "rows.csv", tmp_path / "full", sample_rate=1.0)
    assert full == 5000
    first = _validate(model_dir, tmp_path / "rows.csv", tmp_path / "a")
    assert first == _validate(model_dir, tmp_path / "rows.csv", tmp_path / "b")
    assert (tmp_path / "a" / STATISTICS).read_bytes() == (tmp_path / "b" / STATISTICS).read_bytes()
