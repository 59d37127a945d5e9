"""The archive's dictionary: a table read typed and fingerprinted, the training rows a bundle
keeps (read back to the bit, capped by rows and values), and refusals of another one."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from configs.schema import CompressConfig, DataConfig
from pipeline.archive.dictionary import (
    MAX_DICTIONARY_CELLS,
    MAX_DICTIONARY_ROWS,
    dictionary_for,
    dictionary_from_files,
    dictionary_rows,
    kept_dictionary,
    read_dictionary,
)
from pipeline.artifacts.bundle import DICTIONARY_FILE
from pipeline.core.errors import BundleError
from pipeline.core.records import RecordChunk

NONE = CompressConfig(dictionary=None)


def bundle_with(tmp_path, encoding, part: bytes | None) -> SimpleNamespace:
    """What dictionary_for reads of a bundle: its folder, manifest and encoding."""
    hashes = {}
    if part is not None:
        (tmp_path / DICTIONARY_FILE).write_bytes(part)
        hashes[DICTIONARY_FILE] = hashlib.sha256(part).hexdigest()
    return SimpleNamespace(directory=str(tmp_path), manifest={"sha256": hashes}, encoding=encoding)


def typed_chunks(frame: pd.DataFrame, size: int) -> list[RecordChunk]:
    return [
        RecordChunk("t.csv", [f"t.csv:{i}" for i in range(s, s + len(part))], [""] * len(part),
                    part.reset_index(drop=True))
        for s in range(0, len(frame), size)
        for part in [frame.iloc[s : s + size]]
    ]  # fmt: skip


def test_a_dictionary_file_is_read_typed_and_fingerprinted(encoding, frame_of, tmp_path):
    path = tmp_path / "dictionary.csv"
    frame_of(500, 5).to_csv(path, index=False)
    frame, digest = read_dictionary(str(path), DataConfig(), encoding.kinds)
    assert len(frame) == 500 and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert frame["amount"].dtype == np.float64 and frame["level"].dropna().isin(
        ["1", "2", "3", "17"]).all()  # fmt: skip
    settings = CompressConfig(dictionary=str(path))
    bundle = bundle_with(tmp_path, encoding, None)
    assert dictionary_for(settings, DataConfig(), bundle, digest)[1] == digest
    assert dictionary_for(NONE, DataConfig(), bundle) == (None, None)
    with pytest.raises(BundleError, match="another compress.dictionary"):
        dictionary_for(settings, DataConfig(), bundle, "0" * 64)


def test_the_kept_training_rows_read_back_as_they_were_typed(encoding, frame_of, tmp_path):
    frame = frame_of(700, 3)  # tails, 5e-324, +-1.7e308, -0.0, NaN, unseen categories
    part = kept_dictionary(typed_chunks(frame, 256), encoding.kinds, 600)
    bundle = bundle_with(tmp_path, encoding, part)
    got, digest = dictionary_for(CompressConfig(), DataConfig(id_column="id"), bundle)
    assert digest == hashlib.sha256(part).hexdigest() and len(got) == 600
    want = frame.head(600)
    for name in ("amount", "rate", "wild", "count"):
        x, y = want[name].to_numpy(np.float64), got[name].to_numpy(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        seen = ~np.isnan(x)
        assert np.array_equal(x[seen].view(np.int64), y[seen].view(np.int64)), name  # bits
    for name in ("city", "level"):
        assert got[name].tolist() == want[name].tolist(), name


def test_a_bundle_keeping_no_rows_has_no_dictionary_and_refuses_an_archive_needing_one(
    encoding, tmp_path
):
    bundle = bundle_with(tmp_path, encoding, None)
    assert dictionary_for(CompressConfig(), DataConfig(), bundle) == (None, None)
    with pytest.raises(BundleError, match="keeps none"):
        dictionary_for(CompressConfig(), DataConfig(), bundle, "ab" * 32)


def test_the_kept_rows_are_capped_by_rows_and_by_values():
    assert dictionary_rows(0, 40) == 0
    assert dictionary_rows(100, 40) == 100
    assert dictionary_rows(10**9, 4) == MAX_DICTIONARY_ROWS
    assert dictionary_rows(10**9, 10_000) == MAX_DICTIONARY_CELLS // 10_000


def test_files_give_their_first_typed_rows_and_skip_dead_ones(encoding, frame_of, tmp_path):
    frame = frame_of(300, 8).astype(object)
    frame.loc[1, "amount"] = "not a number"  # dead-lettered by typing: left out
    frame.iloc[:150].to_csv(tmp_path / "a.csv", index=False)
    frame.iloc[150:].to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "c.csv").write_bytes(b"\xff\xfe not a table")
    paths = [str(tmp_path / n) for n in ("a.csv", "c.csv", "b.csv")]
    part = dictionary_from_files(paths, DataConfig(), encoding.kinds, 250)
    got, _ = dictionary_for(CompressConfig(), DataConfig(), bundle_with(tmp_path, encoding, part))
    expected = [v for i, v in enumerate(frame["city"]) if i != 1][:250]
    assert len(got) == 250
    assert got["city"].tolist() == [None if pd.isna(v) else v for v in expected]
    assert dictionary_from_files(paths, DataConfig(), encoding.kinds, 0) is None
