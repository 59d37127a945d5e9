"""The archive as plain functions (what `Detector.compress` / `decompress` call): a DataFrame
round trip in order, saved and loaded as a folder, refused by another model."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from configs import VaepipeConfig
from configs.schema import CompressConfig, DataConfig
from pipeline.archive import format as fmt
from pipeline.archive.api import compress_frame, decompress_archive, load_archive
from pipeline.artifacts.bundle import RecordColumns
from pipeline.core.errors import BundleError

MANIFEST = {"sha256": {"model.keras": "m" * 64, "encoding.json": "e" * 64}}


def bundle_of(model, encoding, manifest=MANIFEST, columns=None):
    return SimpleNamespace(model=model, encoding=encoding, manifest=manifest, directory="bundle",
                           columns=columns)  # fmt: skip


def user_frame(frame_of) -> pd.DataFrame:
    """A user's DataFrame: an id and an excluded column, the columns in their own order."""
    frame = frame_of(650, 21)
    frame.insert(0, "key", [f"k{i:04d}" for i in range(len(frame))])
    frame["comment"] = ["ok" if i % 3 else None for i in range(len(frame))]
    return frame[["key", "city", "amount", "comment", "rate", "wild", "count", "level"]]


def config(**data) -> VaepipeConfig:
    return replace(VaepipeConfig(), data=DataConfig(chunk_rows=200, **data))


def test_a_frame_comes_back_in_order_within_the_bound(tiny_model, encoding, frame_of, tmp_path):
    frame = user_frame(frame_of)
    settings = CompressConfig(relative_tolerance=0.01)
    conf = config(id_column="key", exclude_columns=("comment",))
    archive = compress_frame(bundle_of(tiny_model, encoding), frame, conf, settings)
    assert archive.rows == 650 and len(archive.blocks) == 4 and not archive.dead_letters
    assert 0 < archive.nbytes < 650 * 8 * 6  # below the raw float64s
    restored = decompress_archive(bundle_of(tiny_model, encoding), archive, conf)
    assert list(restored.columns) == list(frame.columns)
    assert restored["key"].tolist() == frame["key"].tolist()
    assert restored["comment"].tolist() == frame["comment"].tolist()
    assert restored["city"].tolist() == frame["city"].tolist()
    x, y = frame["amount"].to_numpy(float), restored["amount"].to_numpy(float)
    assert np.all(np.abs(y - x) <= 0.01 * np.abs(x))
    again = decompress_archive(
        bundle_of(tiny_model, encoding), load_archive(archive.save(str(tmp_path / "a"))), conf
    )
    pd.testing.assert_frame_equal(again, restored)


def test_without_an_id_column_the_rows_keep_their_order(tiny_model, encoding, frame_of):
    frame = user_frame(frame_of).drop(columns=["key"])
    conf = config(exclude_columns=("comment",))
    archive = compress_frame(bundle_of(tiny_model, encoding), frame, conf)
    restored = decompress_archive(bundle_of(tiny_model, encoding), archive, conf)
    x, y = frame["wild"].to_numpy(float), restored["wild"].to_numpy(float)
    seen = ~np.isnan(x)
    assert np.array_equal(x[seen].view(np.int64), y[seen].view(np.int64))  # lossless default


def test_another_model_is_refused(tiny_model, encoding, frame_of):
    conf = config()
    archive = compress_frame(bundle_of(tiny_model, encoding), frame_of(50, 1), conf)
    other = {"sha256": {**MANIFEST["sha256"], "model.keras": "x" * 64}}
    with pytest.raises(BundleError, match=r"another model .*model.keras"):
        decompress_archive(bundle_of(tiny_model, encoding, other), archive, conf)


def test_the_models_own_columns_are_not_listed_again(tiny_model, encoding, frame_of, tmp_path):
    frame = frame_of(120, 2)[["city", "amount", "rate", "level", "wild", "count"]]
    columns = RecordColumns(None, tuple((name, "string") for name in frame.columns))
    bundle = bundle_of(tiny_model, encoding, columns=columns)
    archive = compress_frame(bundle, frame, config())
    assert archive.info["columns"] == fmt.MODEL_COLUMNS  # archive.json costs bytes per record
    loaded = load_archive(archive.save(str(tmp_path / "a")))
    restored = decompress_archive(bundle, loaded, config())
    assert list(restored.columns) == list(frame.columns)
    assert restored["city"].tolist() == frame["city"].tolist()
    with pytest.raises(BundleError, match="does not list its columns"):
        decompress_archive(bundle_of(tiny_model, encoding), loaded, config())
    other = compress_frame(bundle, frame[list(reversed(frame.columns))], config())
    assert other.info["columns"] == list(reversed(frame.columns))  # another order: listed


def test_a_column_training_left_out_comes_back_as_read(tiny_model, encoding, frame_of):
    frame = frame_of(300, 4)  # "stamp": in no kind of the model, nor in data.exclude_columns
    frame["stamp"] = [f"2026-01-01T{i % 24:02d}:00" if i % 5 else None for i in range(300)]
    archive = compress_frame(bundle_of(tiny_model, encoding), frame, config())
    restored = decompress_archive(bundle_of(tiny_model, encoding), archive, config())
    assert list(restored.columns) == list(frame.columns)
    assert restored["stamp"].tolist() == frame["stamp"].tolist()
