"""ValidationReport under the warn/fail policies; the flag-rate alarm."""

from __future__ import annotations

from configs import load_config
from pipeline.features.validation import ValidationReport, flag_rate_alarm, read_report

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
