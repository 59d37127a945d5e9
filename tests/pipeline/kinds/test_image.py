"""pipeline.kinds.image: the image kind's driver checks, its scoring encoding and its decoded
records (PNG files plus an index)."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from configs.schema import ImageConfig, VaepipeConfig
from pipeline.artifacts.bundle import Bundle
from pipeline.core.errors import BundleError
from pipeline.features.image_encoding import ImageEncoding
from pipeline.kinds.image import IMAGE_INDEX_SCHEMA, IMAGES, INDEX, KIND
from pipeline.sinks.images import decoded_image_name, png_bytes

ENCODING = ImageEncoding(height=4, width=3, mode="L", patch_size=2)


def bundle_of(encoding: ImageEncoding, directory: str = "/models/m") -> Bundle:
    """A bundle holding only what the driver checks read (its encoding and folder)."""
    return Bundle(directory, None, encoding, None, None, None, np.zeros(0), {})


def config(**image) -> VaepipeConfig:
    base = {"height": 4, "width": 3, "mode": "L"}
    return VaepipeConfig(image=ImageConfig(**{**base, **image}))


def test_for_scoring_takes_the_runs_patch_size_and_keeps_the_rest():
    scoring = KIND.for_scoring(ENCODING, config(patch_size=3))
    assert scoring.patch_size == 3
    assert (scoring.height, scoring.width, scoring.mode, scoring.likelihood) == (
        4,
        3,
        "L",
        "bernoulli",
    )
    assert ENCODING.patch_size == 2  # the bundle's encoding is not changed


def test_check_inputs_refuses_bigquery():
    with pytest.raises(BundleError, match="image models read image files, not BigQuery rows"):
        KIND.check_inputs(bundle_of(ENCODING), "bq://p.d.t", config())


@pytest.mark.parametrize(
    ("image", "read_as"),
    [({"height": 5}, "5 x 3 L"), ({"width": 4}, "4 x 4 L"), ({"mode": "RGB"}, "4 x 3 RGB")],
)
def test_check_inputs_refuses_a_size_or_mode_the_model_was_not_trained_on(image, read_as):
    with pytest.raises(BundleError) as caught:
        KIND.check_inputs(bundle_of(ENCODING), "/data/images", config(**image))
    message = str(caught.value)
    assert f"the config reads {read_as} images" in message
    assert "model in /models/m was trained on 4 x 3 L images" in message
    assert "(image.height, image.width, image.mode)" in message


def test_check_inputs_lists_one_matching_file_of_a_folder(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(png_bytes(np.zeros((4, 3, 1), np.uint8)))
    found = KIND.check_inputs(bundle_of(ENCODING), str(tmp_path), config())
    assert len(found) == 1 and os.path.dirname(found[0]) == str(tmp_path)


def test_check_inputs_of_an_empty_folder_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no input files match {tmp_path}"):
        KIND.check_inputs(bundle_of(ENCODING), str(tmp_path), config())


def test_decoded_table_writes_one_png_per_record_and_the_index_rows(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(-0.2, 1.2, (3, len(ENCODING.columns)))  # decoder means, unclipped
    ids = ["/in/a/img.png", "/in/b/img.png", "/in/c.png"]
    table = KIND.decoded_table(ENCODING, ids, values, str(tmp_path))

    assert table.schema == IMAGE_INDEX_SCHEMA == KIND.decoded_schema(ENCODING)
    assert table.column("record_id").to_pylist() == ids
    paths = table.column("image").to_pylist()
    assert paths == [str(tmp_path / IMAGES / decoded_image_name(i)) for i in ids]
    assert len(set(paths)) == 3  # equal names in other folders stay apart
    expected = np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8).reshape(3, 4, 3)
    for path, pixels in zip(paths, expected, strict=True):
        with Image.open(io.BytesIO(open(path, "rb").read())) as image:
            assert image.mode == "L" and image.size == (3, 4)
            np.testing.assert_array_equal(np.asarray(image), pixels)


def test_decoded_table_of_no_records_is_empty(tmp_path):
    table = KIND.decoded_table(ENCODING, [], np.zeros((0, 12)), str(tmp_path))
    assert table.num_rows == 0 and table.schema == IMAGE_INDEX_SCHEMA
    assert isinstance(table, pa.Table)


def test_the_index_goes_to_its_own_folder():
    assert KIND.decoded_tables_dir("/out") == os.path.join("/out", INDEX)
