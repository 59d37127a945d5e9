"""Reading image files (Pillow through Beam's file systems) and the image encoding."""

from __future__ import annotations

import io
import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from configs.schema import ImageConfig
from pipeline.core.records import (
    CORRUPT_IMAGE,
    DEAD,
    EMPTY_FILE,
    NOT_AN_IMAGE,
    TOO_MANY_PIXELS,
    TRUNCATED_IMAGE,
    UNREADABLE_FILE,
    UNSUPPORTED_EXTENSION,
    WRONG_MODE,
    WRONG_SIZE,
    DeadLetter,
)
from pipeline.features.image_encoding import ImageEncoding
from pipeline.jobs.runner import counters
from pipeline.kinds import load_encoding
from pipeline.sinks.images import png_bytes
from pipeline.sources.images import (
    FEATURE_KINDS,
    PIXELS,
    ImageRejected,
    ReadImages,
    decode_image,
    ends_early,
    file_signature,
    image_pattern,
    read_image_file,
)

GREY = ImageConfig(height=28, width=28, mode="L")
RGB = ImageConfig(height=28, width=28, mode="RGB")


def pattern(seed: int = 0, shape=(28, 28)) -> np.ndarray:
    """A grey test card: noise plus a bright bar, so a wrong row or column order shows."""
    rng = np.random.default_rng(seed)
    arr = (rng.random(shape) * 120).astype(np.uint8)
    arr[4:20, 10:13] = 250
    return arr


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rejected(data: bytes, config: ImageConfig = GREY) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, config)
    return info.value


# ------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("BMP", {}), ("GIF", {}), ("TIFF", {}), ("WEBP", {"lossless": True})],
)
def test_lossless_grey_files_decode_exactly(fmt, options):
    arr = pattern()
    image = decode_image(encoded(Image.fromarray(arr), fmt, **options), GREY)
    assert image.pixels.shape == (28, 28, 1) and image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels[..., 0], arr)
    assert image.features["format"] == fmt
    assert set(image.features) == set(FEATURE_KINDS)
    assert image.features["mean_intensity"] == pytest.approx(arr.mean() / 255)


def test_jpeg_decodes_close_to_the_original_and_reports_its_features():
    arr = pattern()
    data = encoded(Image.fromarray(arr), "JPEG", quality=95)
    image = decode_image(data, GREY)
    assert np.abs(image.pixels[..., 0].astype(int) - arr).mean() < 4
    assert image.features["format"] == "JPEG" and image.features["mode"] == "L"
    assert (image.features["width"], image.features["height"]) == (28, 28)
    assert image.features["file_bytes"] == len(data)


def test_bilevel_images_become_0_or_255():
    arr = np.where(pattern() > 128, 255, 0).astype(np.uint8)
    image = decode_image(encoded(Image.fromarray(arr).convert("1"), "PNG"), GREY)
    np.testing.assert_array_equal(image.pixels[..., 0], arr)
    assert image.features["mode"] == "1"


def test_rgb_model_reads_rgb_grey_and_palette_images():
    rgb = np.stack([pattern(1), pattern(2), pattern(3)], axis=-1)
    image = decode_image(encoded(Image.fromarray(rgb), "PNG"), RGB)
    np.testing.assert_array_equal(image.pixels, rgb)
    grey = decode_image(encoded(Image.fromarray(pattern()), "PNG"), RGB)
    np.testing.assert_array_equal(grey.pixels, np.repeat(pattern()[..., None], 3, axis=-1))
    palette = Image.fromarray(rgb).quantize(16)
    from_palette = decode_image(encoded(palette, "PNG"), RGB)
    np.testing.assert_array_equal(from_palette.pixels, np.asarray(palette.convert("RGB")))


def test_grey_model_reads_rgb_whose_channels_are_equal_and_refuses_colour():
    arr = pattern()
    grey_rgb = Image.fromarray(arr).convert("RGB")
    np.testing.assert_array_equal(decode_image(encoded(grey_rgb, "PNG"), GREY).pixels[..., 0], arr)
    colour = np.stack([arr, arr, 255 - arr], axis=-1)
    error = rejected(encoded(Image.fromarray(colour), "PNG"))
    assert error.reason == WRONG_MODE and "colour image" in error.message


@pytest.mark.parametrize(
    ("make", "fmt", "why"),
    [
        (lambda a: Image.fromarray(a).convert("RGBA"), "PNG", "alpha channel"),
        (lambda a: Image.fromarray(a).convert("LA"), "PNG", "alpha channel"),
        (lambda a: Image.fromarray(a).convert("CMYK"), "JPEG", "CMYK"),
        (lambda a: Image.fromarray(a).convert("CMYK"), "TIFF", "CMYK"),
        (lambda a: Image.fromarray(a.astype(np.uint16) * 257), "PNG", "16/32-bit"),
        (lambda a: Image.fromarray(a).convert("I"), "TIFF", "16/32-bit"),
        (lambda a: Image.fromarray(a).convert("F"), "TIFF", "floating-point"),
    ],
)
def test_modes_that_need_a_guess_are_refused(make, fmt, why):
    data = encoded(make(pattern()), fmt)
    for config in (GREY, RGB):
        error = rejected(data, config)
        assert error.reason == WRONG_MODE and why in error.message
        assert error.known["mode"] not in ("L", "RGB")


def test_a_palette_with_transparency_is_refused():
    data = encoded(Image.fromarray(pattern()).convert("P"), "PNG", transparency=0)
    error = rejected(data)
    assert (error.reason, error.known["mode"]) == (WRONG_MODE, "P")
    assert "transparency" in error.message


def test_wrong_size_is_refused_or_resized_by_config():
    arr = np.zeros((40, 56), dtype=np.uint8)
    arr[:, 28:] = 200  # right half bright
    data = encoded(Image.fromarray(arr), "PNG")
    error = rejected(data)
    assert error.reason == WRONG_SIZE
    assert "56 x 40" in error.message and "28 x 28" in error.message
    image = decode_image(data, ImageConfig(resize=True))
    assert image.pixels.shape == (28, 28, 1)
    assert image.pixels[:, :13].max() == 0 and image.pixels[:, 15:].min() == 200
    assert (image.features["width"], image.features["height"]) == (56, 40)  # the file's size


def test_files_that_are_not_images():
    assert rejected(b"").reason == EMPTY_FILE
    texts = (b"hello, world\n", b"a,b\n1,2\n" * 50, b"BMW manual " * 9, b"\x89PN")
    for data in (*texts, np.random.default_rng(0).bytes(2000)):
        error = rejected(data)
        assert error.reason == NOT_AN_IMAGE and "PNG" in error.message
        assert file_signature(data) is None


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {}), ("BMP", {}), ("GIF", {}), ("WEBP", {"lossless": True})],
)
def test_a_file_cut_anywhere_after_its_signature_is_truncated(fmt, options):
    """Truncation is read from the file's own structure (end marker, declared size), so a cut
    in a header is not mistaken for another kind of file."""
    data = encoded(Image.fromarray(pattern()), fmt, **options)
    assert file_signature(data) == fmt and not ends_early(data, fmt)
    for cut in range(20, int(len(data) * 0.8), max(1, len(data) // 40)):
        error = rejected(data[:cut])
        assert (error.reason, cut) == (TRUNCATED_IMAGE, cut), error.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_truncated_files_are_refused_at_load(fmt):
    data = encoded(Image.fromarray(pattern()), fmt)
    for fraction in (0.3, 0.6, 0.9):
        error = rejected(data[: int(len(data) * fraction)])
        assert error.reason == TRUNCATED_IMAGE, (fraction, error.message)
        # a header cut short fails before the format is known (JPEG at 30%)
        assert error.known.get("format", fmt) == fmt
    assert rejected(data[: int(len(data) * 0.9)]).known["format"] == fmt


def test_damaged_data_is_a_corrupt_image():
    data = bytearray(encoded(Image.fromarray(pattern()), "PNG"))
    data[60] ^= 0xFF  # inside the compressed pixel data
    error = rejected(bytes(data))
    assert error.reason == CORRUPT_IMAGE and "cannot be decoded" in error.message


def test_decompression_bombs_are_refused_before_decoding():
    bomb = encoded(Image.new("L", (3000, 3000)), "PNG")  # 9 M pixels in 9 KB
    assert len(bomb) < 20_000
    error = rejected(bomb, ImageConfig(max_pixels=1_000_000, resize=True))
    assert error.reason == TOO_MANY_PIXELS and "3000 x 3000" in error.message
    assert decode_image(bomb, ImageConfig(resize=True)).pixels.shape == (28, 28, 1)


# ------------------------------------------------------------------------ one file, Beam


def _never_read():
    raise AssertionError("the file was opened")


def test_files_refused_by_extension_or_size_are_never_opened():
    letter = read_image_file("/data/notes.txt", 120, _never_read, GREY)
    assert isinstance(letter, DeadLetter) and letter.reason == UNSUPPORTED_EXTENSION
    assert letter.message.startswith("/data/notes.txt: ") and ".png" in letter.message
    assert json.loads(letter.raw) == {"path": "/data/notes.txt", "bytes": 120}
    empty = read_image_file("/data/a.PNG", 0, _never_read, GREY)  # extensions: any case
    assert (empty.reason, empty.record_id, empty.stage) == (EMPTY_FILE, "/data/a.PNG", "read")
    anything = ImageConfig(extensions=())
    assert read_image_file("/d/x", 0, _never_read, anything).reason == EMPTY_FILE


def test_a_file_read_becomes_a_record_or_a_dead_letter_with_what_is_known():
    data = encoded(Image.fromarray(pattern()), "PNG")
    path, raw, features, pixels = read_image_file("/d/ok.png", len(data), lambda: data, GREY)
    assert path == "/d/ok.png" and pixels.shape == (28, 28, 1)
    assert json.loads(raw) == {
        "path": "/d/ok.png", "bytes": len(data), "format": "PNG", "mode": "L", "size": [28, 28]
    }  # fmt: skip
    rgba = encoded(Image.fromarray(pattern()).convert("RGBA"), "PNG")
    letter = read_image_file("/d/rgba.png", len(rgba), lambda: rgba, GREY)
    assert json.loads(letter.raw)["mode"] == "RGBA"

    def fails():
        raise OSError("permission denied")

    letter = read_image_file("/d/locked.png", 10, fails, GREY)
    assert letter.reason == UNREADABLE_FILE and "permission denied" in letter.message


def test_folders_mean_every_file_below_them(tmp_path):
    assert image_pattern(str(tmp_path)) == str(tmp_path / "**")
    assert image_pattern("gs://bucket/images/") == "gs://bucket/images/**"
    assert image_pattern("gs://bucket/images/*.png") == "gs://bucket/images/*.png"
    assert image_pattern(str(tmp_path / "*.png")) == str(tmp_path / "*.png")


def _chunk_rows(chunk) -> list[tuple]:
    return [
        (rid, pixels.shape, round(float(mean), 9))
        for rid, pixels, mean in zip(
            chunk.record_ids, chunk.frame[PIXELS], chunk.frame["mean_intensity"], strict=True
        )
    ]


def _reason(letter: DeadLetter) -> tuple[str, str]:
    return letter.record_id, letter.reason


def test_read_images_in_beam_counts_every_file(tmp_path):
    (tmp_path / "sub").mkdir()
    good = {}
    for i in range(7):
        path = tmp_path / ("sub" if i % 2 else "") / f"img{i}.png"
        arr = pattern(i)
        path.write_bytes(png_bytes(arr[..., None]))
        good[str(path)] = arr
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "text.jpg").write_text("not an image")
    expected_dead = [
        (str(tmp_path / "empty.png"), EMPTY_FILE),
        (str(tmp_path / "notes.txt"), UNSUPPORTED_EXTENSION),
        (str(tmp_path / "sub" / "text.jpg"), NOT_AN_IMAGE),
    ]
    expected_rows = [(p, (28, 28, 1), round(a.mean() / 255, 9)) for p, a in good.items()]
    pipeline = BeamTestPipeline()
    read = pipeline | ReadImages(str(tmp_path), GREY, chunk_rows=3)
    rows = read["records"] | beam.FlatMap(_chunk_rows)
    assert_that(rows, equal_to(expected_rows), label="records")
    assert_that(read[DEAD] | beam.Map(_reason), equal_to(expected_dead), label="dead")
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result) == {"rows_read": 10, "rows_dead_lettered": 3}


# ------------------------------------------------------------------------------ encoding


def test_image_encoding_round_trips_pixels_and_names_them_in_order():
    encoding = ImageEncoding(2, 3, "RGB")
    assert encoding.columns[:4] == ["px_0_0_r", "px_0_0_g", "px_0_0_b", "px_0_1_r"]
    assert encoding.columns[-1] == "px_1_2_b" and len(encoding.columns) == 18
    pixels = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 14
    from pipeline.sources.images import to_chunk

    chunk = to_chunk([("a", "{}", dict.fromkeys(FEATURE_KINDS, 0), pixels)] * 2, "src")
    x = encoding.encode(chunk.frame)
    assert x.shape == (2, 36) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :18], pixels.reshape(-1) / 255.0)
    assert x[0, encoding.columns.index("px_1_0_g")] == np.float32(pixels[1, 0, 1] / 255.0)
    assert (x[:, 18:] == 1.0).all()  # pixels are always observed
    decoded = encoding.decode(x[:, :18])
    np.testing.assert_array_equal(decoded[PIXELS][1], pixels)
    # decoding clips what the model may overshoot
    assert encoding.decode(np.full((1, 18), 1.7))[PIXELS][0].min() == 255


def test_image_encoding_picks_the_likelihood_group_and_round_trips_json():
    bernoulli = ImageEncoding(4, 4, "L")
    assert bernoulli.layout().bernoulli == tuple(bernoulli.columns)
    gaussian = ImageEncoding(4, 4, "L", likelihood="gaussian")
    assert gaussian.layout().numeric == tuple(gaussian.columns)
    assert gaussian.layout().n_bernoulli == 0
    again = load_encoding("image", gaussian.to_json())
    assert again == gaussian and again.kinds == FEATURE_KINDS


def test_contributions_are_patch_sums_of_pixel_excess():
    encoding = ImageEncoding(3, 5, "L", patch_size=2)
    nll = np.arange(15, dtype=np.float64).reshape(1, 15)
    baseline = np.ones(15)
    values, names = encoding.contributions(nll, baseline)
    assert names == ["y0:2 x0:2", "y0:2 x2:4", "y0:2 x4:5", "y2:3 x0:2", "y2:3 x2:4", "y2:3 x4:5"]
    # patch y0:2 x0:2 holds pixels 0, 1, 5, 6: (0 + 1 + 5 + 6) - 4
    assert values[0, 0] == 8.0 and values[0, 2] == (4 + 9) - 2
    assert values.sum() == nll.sum() - baseline.sum()
