"""`vaepipe sweep`: one bundle per value, rate and distortion measured, the IWAE bound beside
the ELBO, the AUROC with labels, one page."""

from __future__ import annotations

import json

import pytest

from configs import ConfigError
from pipeline.cli import main
from pipeline.cli.demo_data import synthetic_table
from pipeline.jobs.sweep import swept_setting

SMALL = [
    "data.id_column=id", "train.epochs=6", "model.hidden_units=[32,16]", "model.latent_dim=4",
    "model.kl_warmup_epochs=1", "scoring.iwae_samples=20",
]  # fmt: skip


def test_the_swept_key_is_the_one_with_a_list():
    key, values, fixed = swept_setting(["model.beta=0.1,1,3", "train.epochs=5", "a.b=[1,2]"])
    assert (key, values, fixed) == (
        "model.beta",
        ["0.1", "1", "3"],
        ["train.epochs=5", "a.b=[1,2]"],
    )
    with pytest.raises(ConfigError, match="exactly one --set KEY=V1,V2"):
        swept_setting(["train.epochs=5"])
    with pytest.raises(ConfigError, match=r"\['model.beta', 'train.epochs'\]"):
        swept_setting(["model.beta=1,3", "train.epochs=5,6"])


@pytest.mark.slow
def test_a_beta_sweep_trades_rate_for_distortion(tmp_path):
    data = tmp_path / "table.csv"
    synthetic_table(2500, anomaly_rate=0.05, seed=41).to_csv(data, index=False)
    argv = ["sweep", "--input", str(data), "--output", str(tmp_path / "sweep"),
            "--label-column", "label", "--set", "model.beta=0.2,5"]  # fmt: skip
    for item in SMALL:
        argv += ["--set", item]
    assert main(argv) == 0
    points = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [p["value"] for p in points] == ["0.2", "5"]
    low, high = points
    assert high["rate_bits"] < low["rate_bits"]  # a heavier KL weight spends fewer bits on codes
    for p in points:
        assert p["iwae_nats"] >= p["elbo_nats"] and p["iwae_samples"] == 20
        assert 0.5 < p["auroc"] <= 1.0
        assert (tmp_path / "sweep" / "model.beta={}".format(p["value"]) / "manifest.json").exists()
    page = (tmp_path / "sweep" / "sweep.html").read_text()
    assert "Rate against distortion" in page and "http://" not in page and "https://" not in page
