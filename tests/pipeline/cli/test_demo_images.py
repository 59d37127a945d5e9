"""pipeline.cli.demo_images: seeded 28 x 28 strokes and rings, and PNG files that read back as
the same pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.cli.demo_images import SIZE, rings, strokes, write_pngs


def test_shapes_types_and_seeding():
    for draw in (strokes, rings):
        images = draw(5, seed=1)
        assert images.shape == (5, SIZE, SIZE) and images.dtype == np.uint8
        np.testing.assert_array_equal(images, draw(5, seed=1))
        assert not np.array_equal(images, draw(5, seed=2))
        assert images.max() == 255 and images.min() == 0  # solid ink on black


def test_a_stroke_is_a_vertical_line_through_the_middle():
    images = strokes(50, seed=3).astype(float) / 255
    assert (images[:, 14, 11:18].max(axis=1) == 1).all()  # ink on the centre row
    assert (images[:, 0].max(axis=1) == 0).all()  # the top row stays black (top >= 3)
    # Mostly vertical: far more ink spread over rows than over columns.
    rows_inked = (images.max(axis=2) > 0.5).sum(axis=1)
    cols_inked = (images.max(axis=1) > 0.5).sum(axis=1)
    assert (rows_inked > 2 * cols_inked).all()


def test_a_ring_has_a_dark_centre_and_ink_around_it():
    images = rings(50, seed=4).astype(float) / 255
    assert (images[:, 13:15, 13:15].max(axis=(1, 2)) < 0.5).all()
    assert (images.sum(axis=(1, 2)) > 20).all()
    # Unlike a stroke, a ring inks the left and the right side of its centre on one row.
    row = images[:, 14]
    assert ((row[:, :13].max(axis=1) > 0.5) & (row[:, 15:].max(axis=1) > 0.5)).all()


def test_write_pngs_names_files_in_order_and_they_read_back_exactly(tmp_path):
    images = rings(3, seed=5)
    paths = write_pngs(tmp_path / "new" / "folder", images, "ring")
    assert [p.name for p in paths] == ["ring-00000.png", "ring-00001.png", "ring-00002.png"]
    for path, image in zip(paths, images, strict=True):
        with Image.open(path) as decoded:
            assert decoded.format == "PNG" and decoded.mode == "L"
            np.testing.assert_array_equal(np.asarray(decoded), image)
