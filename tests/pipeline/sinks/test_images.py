"""pipeline.sinks.images: PNG bytes that decode to the same pixels, and decoded-image names
that are stable and keep equal file names in other folders apart."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.sinks.images import decoded_image_name, png_bytes


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_png_round_trip(channels, mode):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    data = png_bytes(pixels)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == mode and image.size == (7, 5)  # (width, height)
        back = np.asarray(image)
    np.testing.assert_array_equal(back.reshape(pixels.shape), pixels)


def test_name_is_the_input_stem_and_a_hash_and_is_stable():
    name = decoded_image_name("gs://bucket/in/cat-01.png")
    assert re.fullmatch(r"cat-01-[0-9a-f]{12}\.png", name)
    assert decoded_image_name("gs://bucket/in/cat-01.png") == name


def test_equal_names_in_other_folders_stay_apart():
    a = decoded_image_name("/data/a/img.png")
    b = decoded_image_name("/data/b/img.png")
    assert a != b
    assert a.startswith("img-") and b.startswith("img-")


def test_unsafe_characters_are_replaced_and_long_stems_cut():
    assert decoded_image_name("/x/we ird&name?.jpg").startswith("we_ird_name_-")
    long = decoded_image_name("/x/" + "a" * 200 + ".png")
    assert long == "a" * 80 + long[80:] and len(long) == 80 + 1 + 12 + 4


def test_a_path_without_a_usable_stem_is_still_named():
    assert re.fullmatch(r"image-[0-9a-f]{12}\.png", decoded_image_name("/"))
    assert decoded_image_name("/x/dir/").startswith("dir-")
