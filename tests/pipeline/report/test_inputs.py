"""What the report reads: Parquet folders, the kept epoch, missing outputs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.report.inputs import (
    kept_epoch,
    parquet_files,
    read_bytes_or_none,
    read_parquet,
    read_scores,
)


def test_kept_epoch_is_the_lowest_validation_loss_after_warmup():
    history = {"val_loss": [1.0, 5.0, 4.0, 3.0, 3.5]}
    assert kept_epoch(history, warmup_epochs=0) == 1
    assert kept_epoch(history, warmup_epochs=3) == 4  # epochs 1-2 are in the warm-up
    assert kept_epoch({"val_loss": [2.0, float("nan"), 1.0]}, 0) == 3  # NaN is never kept
    assert kept_epoch({}, 0) is None
    assert kept_epoch({"val_loss": [2.0, 1.0]}, warmup_epochs=10) == 2


def test_read_parquet_joins_the_files_of_a_folder(tmp_path):
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"a": [3]}), tmp_path / "part-1.parquet")
    (tmp_path / "part-2.parquet").write_bytes(b"")  # an empty file (a shard being written)
    assert [p.rsplit("/", 1)[-1] for p in parquet_files(str(tmp_path))] == [
        "part-0.parquet",
        "part-1.parquet",
    ]
    table = read_parquet(str(tmp_path))
    assert table.column("a").to_pylist() == [1, 2, 3]
    assert table.column("b").to_pylist() == ["x", "y", None]
    only = read_parquet(str(tmp_path), columns=["b", "not_there"])
    assert only.column_names == ["b"]


def test_read_parquet_of_an_empty_folder_is_none(tmp_path):
    assert read_parquet(str(tmp_path)) is None


def test_read_scores_of_a_folder_without_flags_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no flags under .*: is it a score output"):
        read_scores(str(tmp_path))


def test_read_bytes_or_none(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert read_bytes_or_none(str(tmp_path / "f")) == b"abc"
    assert read_bytes_or_none(str(tmp_path / "gone")) is None
