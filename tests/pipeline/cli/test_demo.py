"""pipeline.cli.demo, the cheap parts: the demo's image folders and its argument checks (the
whole demo runs in the end-to-end tests)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from configs import load_config
from pipeline.cli.demo import (
    DEMO_CONFIG,
    DEMO_IMAGE_CONFIG,
    MIN_DEMO_IMAGES,
    NORMAL,
    RING,
    cmd_demo,
    write_demo_images,
)


def _pngs(folder):
    return sorted(p.name for p in folder.glob("*.png"))


def test_write_demo_images_counts_and_folders(tmp_path):
    train, batch = write_demo_images(str(tmp_path / "images"), 300)
    assert train == str(tmp_path / "images" / "train")
    assert batch == str(tmp_path / "images" / "batch")
    names = _pngs(tmp_path / "images" / "train")
    assert len(names) == 300 and names[0] == f"{NORMAL}-00000.png"
    assert len(_pngs(tmp_path / "images" / "batch" / "normal")) == 100  # 300 // 3
    assert len(_pngs(tmp_path / "images" / "batch" / "rings")) == 10  # max(300 // 30, 10)
    assert _pngs(tmp_path / "images" / "batch" / "rings")[0] == f"{RING}-00000.png"
    with Image.open(tmp_path / "images" / "train" / names[0]) as image:
        assert image.size == (28, 28) and image.mode == "L"


def test_a_rerun_with_fewer_images_leaves_no_stale_files(tmp_path):
    root = str(tmp_path / "images")
    write_demo_images(root, 400)
    write_demo_images(root, 150)
    assert len(_pngs(tmp_path / "images" / "train")) == 150
    assert len(_pngs(tmp_path / "images" / "batch" / "normal")) == 100  # max(150 // 3, 100)


def test_train_and_batch_strokes_differ(tmp_path):
    write_demo_images(str(tmp_path), 100)
    a = np.asarray(Image.open(tmp_path / "train" / f"{NORMAL}-00000.png"))
    b = np.asarray(Image.open(tmp_path / "batch" / "normal" / f"{NORMAL}-00000.png"))
    assert not np.array_equal(a, b)  # fresh strokes to score, not the training ones


def test_too_few_demo_images_are_refused_before_any_work(tmp_path):
    args = argparse.Namespace(
        kind="image", rows=MIN_DEMO_IMAGES - 1, output=str(tmp_path / "demo"), config=[], set=[]
    )
    with pytest.raises(ValueError, match=f"at least {MIN_DEMO_IMAGES} images"):
        cmd_demo(args, [])
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    ("kind", "overrides"), [("tabular", DEMO_CONFIG), ("image", DEMO_IMAGE_CONFIG)]
)
def test_the_demo_settings_load_on_their_builtin_config(kind, overrides):
    from configs import builtin_config_path

    config = load_config([builtin_config_path(kind)], overrides)
    config.validate()
    assert config.data.kind == kind
