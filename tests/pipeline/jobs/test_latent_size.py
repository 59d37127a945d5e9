"""model.latent_dim auto: `vaepipe train` sizes the code from the table's feature columns and
says so; the bundle's codes have that many dimensions, and an explicit size still wins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import ConfigError
from pipeline.artifacts.bundle import load_bundle
from pipeline.cli import main
from pipeline.jobs.settings import model_config

SETTINGS = ["data.id_column=id", "train.epochs=1", "model.hidden_units=[16]",
            "model.kl_warmup_epochs=0"]  # fmt: skip


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory):
    """200 rows of 160 numeric columns driven by 4 factors (auto: 160 // 16 = 10 dims)."""
    rng = np.random.default_rng(5)
    values = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 160)) + 0.1 * rng.normal(
        size=(200, 160)
    )
    table = pd.DataFrame(values, columns=[f"c{j}" for j in range(160)])
    table.insert(0, "id", np.arange(200))
    path = tmp_path_factory.mktemp("wide") / "wide.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("latent", "size"), [("auto", 10), ("3", 3)])
def test_train_sizes_the_latent_code_from_the_width(wide_csv, tmp_path, capsys, latent, size):
    out = tmp_path / "bundle"
    sets = [*SETTINGS, f"model.latent_dim={latent}"]
    args = ["train", "--input", str(wide_csv), "--output", str(out)]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    assert load_bundle(str(out)).model.latent_dim == size
    reason = (
        "model.latent_dim auto, 160 feature columns" if latent == "auto" else "model.latent_dim"
    )
    assert f"latent code: {size} dimensions ({reason})" in capsys.readouterr().out


def test_a_later_run_may_state_the_size_auto_gave_but_not_another(wide_csv, tmp_path):
    out = tmp_path / "bundle"
    args = ["train", "--input", str(wide_csv), "--output", str(out)]
    assert main(args + [a for s in SETTINGS for a in ("--set", s)]) == 0
    assert model_config(str(out), (), ["model.latent_dim=10"]).model.latent_dim == 10
    assert model_config(str(out), (), ["model.latent_dim=auto"]).model.latent_dim == "auto"
    with pytest.raises(ConfigError, match=r"model\.latent_dim \(trained: 'auto'; --set .*: 8\)"):
        model_config(str(out), (), ["model.latent_dim=8"])
