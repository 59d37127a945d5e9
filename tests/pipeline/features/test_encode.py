"""encode_chunk: the model input beside the excluded columns, ids and raws kept."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.records import RecordChunk
from pipeline.features.encode import encode_chunk
from pipeline.features.image_encoding import ImageEncoding
from pipeline.sources.images import PIXELS


def _chunk() -> RecordChunk:
    pixels = [np.full((2, 2, 1), v, np.uint8) for v in (0, 255, 51)]
    frame = pd.DataFrame({PIXELS: pd.Series(pixels, dtype=object), "note": ["a", "b", "c"]})
    return RecordChunk("src", ["r1", "r2", "r3"], ["x1", "x2", "x3"], frame)


def test_inputs_ids_raw_and_passthrough():
    encoded = encode_chunk(_chunk(), ImageEncoding(2, 2, "L"), exclude=("note", "absent"))
    assert encoded.record_ids == ["r1", "r2", "r3"] and encoded.raw == ["x1", "x2", "x3"]
    assert encoded.inputs.shape == (3, 8)
    np.testing.assert_allclose(encoded.inputs[:, :4], [[0.0] * 4, [1.0] * 4, [0.2] * 4], atol=1e-6)
    np.testing.assert_array_equal(encoded.inputs[:, 4:], 1.0)
    assert list(encoded.passthrough.columns) == ["note"]  # an absent excluded column is skipped
    assert encoded.passthrough["note"].tolist() == ["a", "b", "c"]


def test_nothing_excluded_carries_no_columns():
    encoded = encode_chunk(_chunk(), ImageEncoding(2, 2, "L"), exclude=())
    assert encoded.passthrough.shape == (3, 0)
