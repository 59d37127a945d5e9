"""model.ensemble_size: the CLI and the API train K seeded members into one bundle, scoring
averages their terms, codes and decoding stay the first member's, and the bundle checks
every member's part."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import vaepipe
from pipeline.artifacts.bundle import MANIFEST_FILE, MEMBER_FILES, load_bundle
from pipeline.cli import main
from pipeline.cli.demo_data import synthetic_table
from pipeline.core.errors import BundleError
from pipeline.jobs import in_process

SETTINGS = [
    "data.id_column=id", "data.exclude_columns=[label]", "train.epochs=3",
    "model.hidden_units=[16,8]", "model.latent_dim=3", "model.kl_warmup_epochs=1",
    "scoring.target_fpr=0.05", "model.ensemble_size=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    synthetic_table(1500, anomaly_rate=0.0, seed=41).to_csv(root / "train.csv", index=False)
    batch = synthetic_table(300, anomaly_rate=0.1, seed=42)
    batch.to_csv(root / "batch.csv", index=False)
    return root, batch


@pytest.fixture(scope="module")
def trained(tables):
    root, _ = tables
    out = root / "bundle"
    args = ["train", "--input", str(root / "train.csv"), "--output", str(out)]
    assert main(args + [a for s in SETTINGS for a in ("--set", s)]) == 0
    return out


def _member_scores(bundle, member: int, batch: pd.DataFrame, config) -> np.ndarray:
    """One member's scores on `batch`, through the same in-process scoring as the ensemble."""
    model = bundle.model if member == 0 else bundle.members[member - 1]
    alone = dataclasses.replace(bundle, model=model, members=())
    flags = in_process.score(alone, batch, config).flags.to_pandas()
    return flags.set_index("record_id")["score"]


def test_cli_bundle_holds_both_members_and_scores_their_mean(trained, tables, tmp_path):
    root, batch = tables
    manifest = json.loads((trained / MANIFEST_FILE).read_text())
    assert MEMBER_FILES[0] in manifest["sha256"] and MEMBER_FILES[1] not in manifest["sha256"]
    report = json.loads((trained / "training_report.json").read_text())
    assert len(report["member_histories"]) == 1 and report["member_histories"][0]["loss"]

    code = main(["score", "--model", str(trained), "--input", str(root / "batch.csv"),
                 "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    cli = pd.read_parquet(tmp_path / "out" / "flags").set_index("record_id")
    assert len(cli) == len(batch)
    bundle = load_bundle(str(trained))
    config = vaepipe.load(trained).config_
    each = [_member_scores(bundle, k, batch, config).loc[cli.index] for k in (0, 1)]
    assert not np.allclose(each[0], each[1])  # two seeds: two different models
    np.testing.assert_allclose(cli["score"], (each[0] + each[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(cli["score"], cli["reconstruction_nll"] + cli["kl"], rtol=1e-5)


def test_codes_decode_with_the_first_member(trained, tables):
    _, batch = tables
    detector = vaepipe.load(trained)
    codes = detector.encode(batch)
    bundle = load_bundle(str(trained))
    alone = dataclasses.replace(bundle, members=())
    first = in_process.score(alone, batch, detector.config_).codes.to_pandas()
    np.testing.assert_array_equal(np.stack(codes["code"]), np.stack(first["code"]))
    assert len(detector.decode(codes)) == len(batch)


def test_a_changed_member_part_is_refused(trained, tmp_path):
    copy = tmp_path / "bundle"
    vaepipe.load(trained).save(copy)
    part = copy / MEMBER_FILES[0]
    part.write_bytes(part.read_bytes() + b"x")
    with pytest.raises(BundleError, match=f"bundle part {MEMBER_FILES[0]} .* was changed"):
        load_bundle(str(copy))


def test_retraining_one_model_into_the_folder_removes_the_old_members(trained, tables, tmp_path):
    root, _ = tables
    copy = tmp_path / "bundle"
    vaepipe.load(trained).save(copy)
    settings = [s for s in SETTINGS if not s.startswith("model.ensemble_size")]
    settings.append("model.ensemble_size=1")
    args = ["train", "--input", str(root / "train.csv"), "--output", str(copy)]
    assert main(args + [a for s in settings for a in ("--set", s)]) == 0
    assert not (copy / MEMBER_FILES[0]).exists()
    assert load_bundle(str(copy)).members == ()


def test_the_api_trains_the_same_kind_of_bundle(tables):
    root, batch = tables
    train = pd.read_csv(root / "train.csv")
    detector = vaepipe.fit(
        train, id_column="id", exclude_columns=["label"], epochs=2, hidden_units=[16, 8],
        latent_dim=3, ensemble_size=3,
    )  # fmt: skip
    bundle = load_bundle(detector._loaded().directory)
    assert len(bundle.members) == 2
    assert [m.seed for m in (bundle.model, *bundle.members)] == [0, 1000, 2000]
    assert np.isfinite(detector.decision_function(batch)).all()


def test_members_after_the_first_fit_the_member_trim(tables):
    root, _ = tables
    train = pd.read_csv(root / "train.csv")
    detector = vaepipe.fit(
        train, id_column="id", exclude_columns=["label"], epochs=2, hidden_units=[16, 8],
        latent_dim=3, ensemble_size=3, trim_fraction=0.0, member_trim_fraction=0.05,
    )  # fmt: skip
    bundle = load_bundle(detector._loaded().directory)
    models = (bundle.model, *bundle.members)
    # The first member (whose codes the outputs carry) fits every row; the others the trim.
    assert [m.trim_fraction for m in models] == [0.0, 0.05, 0.05]
    assert [m.seed for m in models] == [0, 1000, 2000]


def test_without_a_member_trim_every_member_fits_the_run_trim():
    from configs import load_config
    from pipeline.jobs.train import member_configs, member_line

    config = load_config(
        [], ["model.ensemble_size=3", "model.trim_fraction=0.02", "model.member_trim_fraction=null"]
    )
    members = member_configs(config)
    assert [m.model.trim_fraction for m in members] == [0.02, 0.02, 0.02]
    mixed = load_config([], [])  # the default: a full fit and a 5% trimmed fit
    assert mixed.model.ensemble_size == 2
    assert [member_line(k, m) for k, m in enumerate(member_configs(mixed))] == [
        "      ensemble member 1 of 2 (train.seed 0, full ELBO)",
        "      ensemble member 2 of 2 (train.seed 1000, trimmed ELBO 0.05)",
    ]


@pytest.mark.parametrize("size", [0, 9])
def test_an_ensemble_size_out_of_range_is_refused(tables, tmp_path, size, capsys):
    root, _ = tables
    code = main(["train", "--input", str(root / "train.csv"), "--output", str(tmp_path / "m"),
                 "--set", f"model.ensemble_size={size}"])  # fmt: skip
    assert code != 0
    assert "model.ensemble_size must be an integer from 1 to 8" in capsys.readouterr().err


def test_a_stopped_ensemble_run_keeps_the_members_it_finished(tables, tmp_path, monkeypatch):
    from configs import load_config
    from pipeline.jobs import train as train_job

    root, _ = tables
    config = load_config([], SETTINGS)
    out, real, seeds = str(tmp_path / "bundle"), train_job.fit_model, []

    def stopping(model, *args, **kwargs):
        seeds.append(model.seed)
        if model.seed == 1000 and len(seeds) == 2:
            raise KeyboardInterrupt  # the run is stopped while member 2 trains
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train_job, "fit_model", stopping)
    with pytest.raises(KeyboardInterrupt):
        train_job.train(str(root / "train.csv"), out, config, echo=lambda line: None)
    lines: list[str] = []
    train_job.train(str(root / "train.csv"), out, config, echo=lines.append)
    assert seeds == [0, 1000, 1000]  # member 1 was not trained again
    assert any("already trained by the stopped run" in line for line in lines)
    bundle = load_bundle(out)
    assert [m.seed for m in (bundle.model, *bundle.members)] == [0, 1000]
