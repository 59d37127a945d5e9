"""The Python API: fit, score, encode, decode, save and load a DataFrame in process, and the
same bundle scores the same records identically through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import vaepipe
from configs import ConfigError
from pipeline.cli import main
from pipeline.cli.demo_data import synthetic_table
from vaepipe.settings import overrides

SMALL = {
    "id_column": "id",
    "exclude_columns": ["label"],
    "epochs": 4,
    "hidden_units": [32, 16],
    "latent_dim": 4,
    "kl_warmup_epochs": 1,
    "target_fpr": 0.05,
}


@pytest.fixture(scope="module")
def detector() -> vaepipe.Detector:
    return vaepipe.fit(synthetic_table(2500, anomaly_rate=0.0, seed=31), **SMALL)


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return synthetic_table(400, anomaly_rate=0.1, seed=32)


def test_fit_follows_scikit_learn_and_pyod_conventions(detector, batch):
    scores = detector.decision_function(batch)
    assert scores.shape == (len(batch),) and np.isfinite(scores).all()
    flags = detector.predict(batch)
    np.testing.assert_array_equal(flags, (scores > detector.threshold_).astype(int))
    assert detector.config_.model.latent_dim == 4 and detector.history_["loss"]
    assert isinstance(vaepipe.Detector(**SMALL).fit(batch), vaepipe.Detector)


def test_score_returns_the_flags_columns_with_the_excluded_ones(detector, batch):
    flags = detector.score(batch)
    assert list(flags.columns[:6]) == [
        "record_id", "score", "reconstruction_nll", "kl", "p_value", "is_anomaly",
    ]  # fmt: skip
    assert flags["record_id"].tolist() == batch["id"].astype(str).tolist()
    assert flags["label"].tolist() == batch["label"].astype(str).tolist()
    np.testing.assert_allclose(flags["score"], flags["reconstruction_nll"] + flags["kl"], 1e-5)
    assert flags["p_value"].between(0, 1).all()


def test_the_cli_scores_a_saved_bundle_identically(detector, batch, tmp_path):
    saved = detector.save(tmp_path / "model")
    loaded = vaepipe.load(saved)
    api = loaded.score(batch).set_index("record_id")
    batch.to_csv(tmp_path / "batch.csv", index=False)
    code = main(["score", "--model", saved, "--input", str(tmp_path / "batch.csv"),
                 "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    cli = pd.read_parquet(tmp_path / "out" / "flags").set_index("record_id").loc[api.index]
    np.testing.assert_allclose(cli["score"], api["score"], rtol=1e-6)
    np.testing.assert_array_equal(cli["is_anomaly"], api["is_anomaly"])
    assert (cli["top_feature_1"] == api["top_feature_1"]).all()


def test_encode_then_decode_gives_records_near_the_originals(detector, batch):
    codes = detector.encode(batch)
    assert codes["record_id"].tolist() == batch["id"].astype(str).tolist()
    assert all(len(code) == 4 for code in codes["code"])
    records = detector.decode(codes)
    # The input's id column by its name, then its modelled columns in their order and types.
    assert list(records.columns) == ["id"] + [c for c in batch.columns if c not in ("id", "label")]
    assert records["id"].tolist() == codes["record_id"].tolist()
    assert records["is_weekend"].dtype == "int64"
    normal = batch["label"] == 0
    # The decoded numbers are nearer the records than the column means are (a 4-dim code).
    for column in ("latency_ms", "load"):
        truth = batch.loc[normal, column].to_numpy(dtype=float)
        seen = ~np.isnan(truth)
        decoded = records.loc[normal, column].to_numpy(dtype=float)
        error = np.abs(decoded[seen] - truth[seen]).mean()
        assert error < np.abs(truth[seen] - truth[seen].mean()).mean()


def test_a_bad_row_raises_naming_the_record_and_field_or_is_dead_lettered(detector, batch):
    bad = batch.astype({"load": object}).copy()
    bad.loc[3, "load"] = "heavy"
    with pytest.raises(vaepipe.BadRecordError, match=r"record r.*field 'load': not_a_number"):
        detector.score(bad)
    lenient = vaepipe.load(detector.model_dir_, on_bad_rows="dead_letter")
    flags = lenient.score(bad)
    assert len(flags) == len(bad) - 1
    assert lenient.dead_letters_["record_id"].tolist() == [str(bad.loc[3, "id"])]


def test_keyword_settings_name_their_section_or_fail_clearly():
    assert overrides({"latent_dim": 3, "train__batch_size": 64, "model.beta": 0.5}) == [
        "model.latent_dim=3", "train.batch_size=64", "model.beta=0.5",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="train__batch_size or scoring__batch_size"):
        overrides({"batch_size": 64})
    with pytest.raises(ConfigError, match="unknown setting 'latnet_dim'"):
        overrides({"latnet_dim": 3})
    with pytest.raises(RuntimeError, match="not fitted"):
        vaepipe.Detector().score(pd.DataFrame({"a": [1.0]}))


@pytest.mark.parametrize(
    ("statement", "absent"),
    [("import vaepipe", "tensorflow"), ("import vae_model.layout", "keras")],
)
def test_light_imports_stay_light(statement, absent):
    code = f"import sys; {statement}; print({absent!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_bundle_keeps_its_training_rows_as_the_archives_dictionary(detector, batch, tmp_path):
    import json

    from pipeline.artifacts.bundle import DICTIONARY_FILE

    saved = tmp_path / "bundle"
    detector.save(saved)
    manifest = json.loads((saved / "manifest.json").read_text())
    archive = detector.compress(batch, relative_tolerance=0.01)
    assert archive.info["dictionary_sha256"] == manifest["sha256"][DICTIONARY_FILE]
    back = vaepipe.Detector.load(saved).decompress(archive)
    assert back["id"].astype(str).tolist() == batch["id"].astype(str).tolist()
    bare = vaepipe.fit(synthetic_table(600, anomaly_rate=0.0, seed=33), **SMALL,
                       keep_training_rows=0)  # fmt: skip
    bare.save(tmp_path / "bare")
    assert not (tmp_path / "bare" / DICTIONARY_FILE).exists()
    assert bare.compress(batch).info["dictionary_sha256"] is None


def test_a_rank_gaussian_model_trains_on_beam_and_scores_and_decodes_the_same(batch, tmp_path):
    """`data.numeric_scaling=quantile` through `vaepipe train` (Beam's TFDV statistics give the
    knots), then the same bundle in process: one score per record, and decoding inverts the map."""
    synthetic_table(1500, anomaly_rate=0.0, seed=33).to_csv(tmp_path / "train.csv", index=False)
    sets = overrides({**SMALL, "numeric_scaling": "quantile"})
    args = ["train", "--input", str(tmp_path / "train.csv"), "--output", str(tmp_path / "model")]
    assert main(args + [item for s in sets for item in ("--set", s)]) == 0
    encoding = json.loads((tmp_path / "model" / "encoding.json").read_text())
    assert all(len(s["knots"]) == len(s["levels"]) > 2 for s in encoding["numeric"])
    loaded = vaepipe.load(tmp_path / "model")
    scores = loaded.decision_function(batch)
    assert np.isfinite(scores).all()
    normal = (batch["label"] == 0).to_numpy()
    assert scores[~normal].mean() > scores[normal].mean()
    records = loaded.decode(loaded.encode(batch))
    truth = batch.loc[normal, "latency_ms"].to_numpy(dtype=float)
    seen = ~np.isnan(truth)
    decoded = records.loc[normal, "latency_ms"].to_numpy(dtype=float)[seen]
    assert (
        np.abs(decoded - truth[seen]).mean() < np.abs(truth[seen] - np.median(truth[seen])).mean()
    )
