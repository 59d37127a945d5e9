"""`write_report` on real bundles and score outputs: every section, one self-contained file,
and a bounded size for a million scored rows."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts.bundle import load_bundle
from pipeline.report.build import write_report
from pipeline.report.inputs import kept_epoch, read_model
from pipeline.scoring.outputs import codes_schema, codes_table, flags_schema
from pipeline.sinks.parquet import dead_letter_schema

SECTIONS = ("training", "calibration", "batch", "anomalies", "latent", "drift", "code", "samples")
URL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


def _quiet(_line: str) -> None:
    pass


def _section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)">', html)


def test_kept_epoch_is_the_lowest_validation_loss_after_warm_up():
    history = {"val_loss": [1.0, 5.0, 4.0, 3.0, 3.5]}
    assert kept_epoch(history, 0) == 1
    assert kept_epoch(history, 3) == 4  # epochs 1-2 are warm-up (not eligible)
    assert kept_epoch({"val_loss": [2.0, float("nan"), 1.0]}, 0) == 3
    assert kept_epoch({}, 0) is None


@pytest.mark.slow
def test_report_of_a_scored_batch(model_dir, scores_dir, tmp_path):
    out = write_report(str(model_dir), str(scores_dir), str(tmp_path / "r.html"), echo=_quiet)
    html = open(out, encoding="utf-8").read()
    assert _section_ids(html) == list(SECTIONS)
    assert not URL.search(html) and "http" not in html  # no external resource of any kind
    assert "<link" not in html and 'src="http' not in html
    summary = json.loads((scores_dir / "summary.json").read_text())
    assert f"<b>{summary['rows_read']:,}</b>rows read" in html
    assert "-row sample of" not in html  # a small output's histogram holds every row
    flags = pd.read_parquet(scores_dir / "flags")
    top = flags.sort_values("score", ascending=False).iloc[0]
    assert top["record_id"] in html  # the first row of the top-anomalies table
    facts = read_model(str(model_dir))
    kept = kept_epoch(facts.history, facts.config.model.kl_warmup_epochs)
    assert f"kept: epoch {kept}" in html
    # Every drift row of the validation report is drawn.
    report = json.loads((scores_dir / "validation_report.json").read_text())
    for row in report["drift"]:
        assert row["feature"] in html


@pytest.mark.slow
def test_report_of_a_model_alone_goes_beside_it(model_dir, scores_dir, tmp_path):
    html = open(write_report(str(model_dir), output=str(tmp_path / "m.html"), echo=_quiet)).read()
    assert _section_ids(html) == ["training", "calibration", "code", "samples"]
    assert write_report(str(model_dir), str(scores_dir), echo=_quiet) == str(
        scores_dir / "report.html"
    )


def _million_row_output(model_dir, root, rows: int = 1_000_000):
    """A score output of `rows` synthetic records (flags, codes, dead letters, reports)."""
    bundle = load_bundle(str(model_dir), load_model=False)
    rng = np.random.default_rng(0)
    ids = pa.array([f"r{i:07d}" for i in range(rows)])
    score = rng.gamma(4.0, 2.0, rows)
    columns = {
        "record_id": ids,
        "score": score,
        "reconstruction_nll": score * 0.7,
        "kl": score * 0.3,
        "p_value": rng.random(rows),
        "is_anomaly": score > bundle.calibration.threshold,
    }
    names = np.array(bundle.encoding.columns, dtype=object)
    for k in (1, 2, 3):
        columns[f"top_feature_{k}"] = pa.array(names[rng.integers(0, len(names), rows)])
        columns[f"top_contribution_{k}"] = rng.normal(size=rows)
    columns["label"] = pa.array(np.where(rng.random(rows) < 0.01, "1", "0").astype(object))
    (root / "flags").mkdir(parents=True)
    pq.write_table(pa.table(columns, schema=flags_schema(3, ("label",))),
                   root / "flags" / "part-00000.parquet")  # fmt: skip
    scale = np.asarray(bundle.calibration.code_scale)
    schema = codes_schema(len(scale), "int8", scale)
    code = rng.integers(-100, 100, (rows, len(scale)), dtype=np.int8)
    (root / "codes").mkdir()
    pq.write_table(codes_table(ids.to_pylist(), code, schema), root / "codes" / "p.parquet")
    (root / "dead_letter").mkdir()
    dead = {name: ["x"] * 5 for name in dead_letter_schema().names}
    pq.write_table(pa.table(dead, schema=dead_letter_schema()), root / "dead_letter" / "p.parquet")
    flagged = int(columns["is_anomaly"].sum())
    summary = {"rows_read": rows + 5, "rows_scored": rows, "rows_dead_lettered": 5,
               "rows_flagged": flagged, "flag_rate_alarm": None}  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary))
    drift = [{"feature": c, "measure": "jensen_shannon_divergence", "value": 0.01,
              "threshold": 0.1, "drifted": False} for c in bundle.encoding.columns]  # fmt: skip
    (root / "validation_report.json").write_text(
        json.dumps({"schema_anomalies": [], "drift": drift})
    )


@pytest.mark.slow
def test_a_million_scored_rows_make_a_small_report(model_dir, tmp_path):
    _million_row_output(model_dir, tmp_path / "out")
    started = time.time()
    out = write_report(str(model_dir), str(tmp_path / "out"), str(tmp_path / "big.html"),
                       echo=_quiet)  # fmt: skip
    seconds = time.time() - started
    size = (tmp_path / "big.html").stat().st_size
    print(f"1M-row report: {size / 1e6:.2f} MB in {seconds:.1f} s")
    assert size < 5_000_000
    html = open(out).read()
    assert _section_ids(html) == list(SECTIONS)
    assert "1,000,000" in html  # the row accounting counts every row ...
    assert "histogram of a 200,000-row sample of 1,000,000" in html  # ... the histogram not
    assert html.count('r="2.6"') <= 3000  # ... but the latent map draws a sample
