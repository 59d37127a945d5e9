"""ImageEncoding: column names, encode/decode round trip, patch contributions, JSON."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.image_encoding import ImageEncoding
from pipeline.sources.images import PIXELS


def _frame(images) -> pd.DataFrame:
    return pd.DataFrame({PIXELS: pd.Series(list(images), dtype=object)})


def test_column_names_in_row_major_order():
    assert ImageEncoding(1, 2, "L").columns == ["px_0_0", "px_0_1"]
    assert ImageEncoding(1, 1, "RGB").columns == ["px_0_0_r", "px_0_0_g", "px_0_0_b"]


def test_layout_follows_the_likelihood():
    assert ImageEncoding(2, 2, "L").layout().bernoulli == tuple(ImageEncoding(2, 2, "L").columns)
    assert len(ImageEncoding(2, 2, "L", likelihood="gaussian").layout().numeric) == 4


def test_encode_decode_round_trip_is_exact_on_uint8():
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 3), dtype=np.uint8)
    encoding = ImageEncoding(3, 4, "RGB")
    packed = encoding.encode(_frame(images))
    assert packed.shape == (5, 2 * 36) and packed.dtype == np.float32
    back = np.stack(encoding.decode(packed[:, :36])[PIXELS].to_list())
    np.testing.assert_array_equal(back, images)


def test_decode_clips_out_of_range_intensities():
    back = ImageEncoding(1, 2, "L").decode(np.array([[-0.5, 1.7]]))[PIXELS][0]
    assert back.ravel().tolist() == [0, 255]


def test_a_wrong_size_image_is_refused_with_both_sizes():
    images = np.zeros((1, 2, 2, 1), np.uint8)
    with pytest.raises(ValueError, match=r"images of 4 values each .* 3 x 3 L input \(9 values\)"):
        ImageEncoding(3, 3, "L").encode(_frame(images))


def test_empty_frame_encodes_to_no_rows():
    assert ImageEncoding(2, 2, "L").encode(_frame([])).shape == (0, 8)


def test_patch_contributions_sum_their_pixels():
    encoding = ImageEncoding(3, 3, "L", patch_size=2)
    nll = np.arange(9, dtype=float)[None, :]
    sums, names = encoding.contributions(nll, np.ones(9))
    assert names == ["y0:2 x0:2", "y0:2 x2:3", "y2:3 x0:2", "y2:3 x2:3"]
    # pixels 0,1,3,4 | 2,5 | 6,7 | 8, each minus a baseline of 1
    np.testing.assert_allclose(sums[0], [8 - 4, 7 - 2, 13 - 2, 8 - 1])


def test_json_round_trip():
    encoding = ImageEncoding(4, 5, "RGB", likelihood="gaussian", patch_size=3)
    assert ImageEncoding.from_json(encoding.to_json()) == encoding
