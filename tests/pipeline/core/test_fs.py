"""pipeline.core.fs: small-file helpers over Beam's file systems, on the local file system."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.core import fs


def test_bytes_text_and_json_round_trip(tmp_path):
    fs.write_bytes(str(tmp_path / "b.bin"), b"\x00\xffdata")
    assert fs.read_bytes(str(tmp_path / "b.bin")) == b"\x00\xffdata"
    fs.write_text(str(tmp_path / "t.txt"), "caf\u00e9")
    assert (tmp_path / "t.txt").read_bytes() == "caf\u00e9".encode()
    assert fs.read_text(str(tmp_path / "t.txt")) == "caf\u00e9"
    fs.write_json(str(tmp_path / "j.json"), {"a": [1, 2], "path": tmp_path})
    assert json.loads(fs.read_text(str(tmp_path / "j.json"))) == {
        "a": [1, 2],
        "path": str(tmp_path),
    }


def test_write_creates_missing_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c.txt"
    fs.write_text(str(path), "x")
    assert path.read_text() == "x"


def test_exists_and_is_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert fs.exists(str(tmp_path / "f")) and not fs.exists(str(tmp_path / "nope"))
    assert fs.is_file(str(tmp_path / "f"))
    assert not fs.is_file(str(tmp_path)) and not fs.is_file(str(tmp_path / "nope"))


def test_is_local():
    assert fs.is_local("/tmp/x") and fs.is_local("relative/x")
    assert not fs.is_local("gs://bucket/x")


def test_list_and_remove_folders_by_prefix_including_empty_ones(tmp_path):
    (tmp_path / "_tmp-1" / "deep").mkdir(parents=True)
    (tmp_path / "_tmp-1" / "deep" / "f").write_text("x")
    (tmp_path / "_tmp-2").mkdir()  # empty: Beam's match sees no file in it
    (tmp_path / "_tmp-3" / "only-folders").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "f").write_text("x")
    expected = [str(tmp_path / f"_tmp-{i}") for i in (1, 2, 3)]
    assert fs.list_folders(str(tmp_path), "_tmp-") == expected
    assert fs.remove_folders(str(tmp_path), "_tmp-") == expected
    assert sorted(os.listdir(tmp_path)) == ["keep"]
    assert fs.remove_folders(str(tmp_path), "_tmp-") == []


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    fs.write_atomically(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["state.json"]


def test_files_below_lists_every_file_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x", "a/y", "a/b/z"):
        (tmp_path / name).write_text(name)
    assert fs.files_below(str(tmp_path)) == sorted(str(tmp_path / n) for n in ("x", "a/y", "a/b/z"))


def test_move_tree_moves_a_folder_whole_and_creates_the_parent(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f").write_text("data")
    target = tmp_path / "new" / "parent" / "dst"
    fs.move_tree(str(source), str(target))
    assert not source.exists()
    assert (target / "sub" / "f").read_text() == "data"


def test_copy_tree_copies_files_and_folders_and_replaces_the_target(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("new")
    target = tmp_path / "dst"
    target.mkdir()
    (target / "stale").write_text("old")
    fs.copy_tree(str(source), str(target))
    assert sorted(os.listdir(target)) == ["f"]  # the old content is gone
    assert (source / "f").read_text() == "new"  # the source stays
    fs.copy_tree(str(source / "f"), str(tmp_path / "one" / "f2"))
    assert (tmp_path / "one" / "f2").read_text() == "new"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("out", "out", True),
        ("out", "out/model", True),
        ("out/model", "out", True),
        ("out", "output", False),  # a shared prefix is not nesting
        ("out/a", "out/b", False),
        ("gs://b/out", "gs://b/out/", True),
        ("gs://b/out", "gs://b/out/model", True),
        ("gs://b/out", "gs://b/output", False),
    ],
)
def test_same_or_nested(tmp_path, monkeypatch, a, b, expected):
    monkeypatch.chdir(tmp_path)
    assert fs.same_or_nested(a, b) is expected


def test_same_or_nested_follows_links(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert fs.same_or_nested(str(tmp_path / "link" / "sub"), str(tmp_path / "real"))
