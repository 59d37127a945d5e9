"""Bundle parts round trip; load_bundle refuses a tampered or incomplete bundle by name."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts.bundle import (
    CALIBRATION_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SCORES_FILE,
    Calibration,
    load_bundle,
    npy_bytes,
)
from pipeline.core.errors import BundleError


def test_calibration_json_round_trip():
    calibration = Calibration(0.01, 3.25, (0.5, 1.5, 2.0), (0.1, 0.2), 400)
    back = Calibration.from_json(calibration.to_json())
    assert back == calibration
    assert isinstance(back.feature_baseline, tuple) and isinstance(back.code_scale, tuple)


def test_npy_bytes_round_trip_without_pickle():
    array = np.sort(np.random.default_rng(0).random(17))
    back = np.load(io.BytesIO(npy_bytes(array)), allow_pickle=False)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype


def test_npy_bytes_refuses_object_arrays():
    with pytest.raises(ValueError):
        npy_bytes(np.array([{"a": 1}], dtype=object))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    import vaepipe

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], size=300)})
    detector = vaepipe.fit(frame, epochs=2, hidden_units=[16], latent_dim=2)
    return detector.save(str(tmp_path_factory.mktemp("bundle") / "model"))


def _copy(bundle_dir, tmp_path) -> str:
    target = str(tmp_path / "copy")
    shutil.copytree(bundle_dir, target)
    return target


def test_a_whole_bundle_loads(bundle_dir):
    bundle = load_bundle(bundle_dir, load_model=False)
    assert bundle.calibration.n_calibration == len(bundle.calibration_scores)
    assert bundle.manifest["data_kind"] == "tabular"


def test_a_tampered_part_is_refused_by_name(bundle_dir, tmp_path):
    target = _copy(bundle_dir, tmp_path)
    with open(os.path.join(target, CALIBRATION_FILE), "a") as handle:
        handle.write(" ")
    with pytest.raises(BundleError, match=f"bundle part {CALIBRATION_FILE} in .* was changed"):
        load_bundle(target, load_model=False)


def test_a_missing_part_is_refused_by_name(bundle_dir, tmp_path):
    target = _copy(bundle_dir, tmp_path)
    os.remove(os.path.join(target, SCORES_FILE))
    with pytest.raises(BundleError, match=f"is missing its part {SCORES_FILE}"):
        load_bundle(target, load_model=False)


def test_a_missing_manifest_is_refused(bundle_dir, tmp_path):
    target = _copy(bundle_dir, tmp_path)
    os.remove(os.path.join(target, MANIFEST_FILE))
    with pytest.raises(BundleError, match=f"{MANIFEST_FILE} is missing"):
        load_bundle(target, load_model=False)


def test_the_saved_model_holds_no_optimizer_state_and_still_scores(bundle_dir):
    import zipfile

    import h5py

    with zipfile.ZipFile(os.path.join(bundle_dir, MODEL_FILE)) as archive:
        weights = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(weights), "r") as h5:
        assert "optimizer" not in h5, list(h5)  # Adam's moments: twice the weights
    bundle = load_bundle(bundle_dir)
    x = np.zeros((3, 2 * bundle.model.layout.width))
    scores = bundle.model.predict(x.astype(np.float32), verbose=0)["score"]
    assert np.isfinite(scores).all()
