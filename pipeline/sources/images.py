"""Image files -> records (data.kind image): one file is one record, its id the file's path.

Files are matched and opened through Beam's file systems (local, gs://), decoded with Pillow,
converted to the model's mode and size, and batched into RecordChunks whose frame holds the
per-image features TFDV profiles (size, mode, format, bytes, intensity) and the pixels.
A file that cannot become a record is a DeadLetter naming the file and why (the policy is in
`configs/image.yaml`); its `raw` is a small JSON of what is known (path, bytes, format, mode,
size), never the file's content.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.io import fileio
from PIL import Image

from configs.schema import ImageConfig
from pipeline.core import metrics
from pipeline.core.records import (
    CATEGORICAL,
    CORRUPT_IMAGE,
    DEAD,
    EMPTY_FILE,
    NOT_AN_IMAGE,
    NUMERIC,
    TOO_MANY_PIXELS,
    TRUNCATED_IMAGE,
    UNREADABLE_FILE,
    UNSUPPORTED_EXTENSION,
    WRONG_MODE,
    WRONG_SIZE,
    DeadLetter,
    RecordChunk,
)

STAGE = "read"
PIXELS = "pixels"  # frame column: one uint8 array [height, width, channels] per record
# What TFDV profiles per image (pixels stay out: thousands of features, slow, not useful to
# validate one by one). height, width and mode are the file's own, before any conversion;
# the intensities are those of the model input, in [0, 1].
FEATURE_KINDS = {
    "file_bytes": NUMERIC,
    "format": CATEGORICAL,
    "height": NUMERIC,
    "mean_intensity": NUMERIC,
    "mode": CATEGORICAL,
    "std_intensity": NUMERIC,
    "width": NUMERIC,
}
# The decoders Pillow may use: common raster formats only, so a file can never reach a
# plugin that runs external programs (EPS) or parses rarely used formats.
DECODERS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
CHANNELS = {"L": 1, "RGB": 3}
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_REFUSED_WHY = {
    "CMYK": "CMYK needs a colour profile to convert",
    "F": "floating-point pixels: scaling them to 8 bits would be a guess about their range",
}


class ImageRejected(Exception):
    """A file that cannot be a record: the dead-letter reason code and a message."""

    def __init__(self, reason: str, message: str, known: dict | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.known = known or {}


@dataclass(frozen=True)
class DecodedImage:
    """One image as the model reads it, with the features TFDV profiles."""

    pixels: np.ndarray  # uint8 [height, width, channels]
    features: dict


def image_pattern(pattern: str) -> str:
    """A folder becomes every file below it: a pattern ending in / (local or gs://), or a
    local directory. A folder on gs:// is never listed here (MatchFiles does, in the job)."""
    if pattern.endswith("/"):
        return pattern + "**"
    if "://" not in pattern and os.path.isdir(pattern):
        return os.path.join(pattern, "**")
    return pattern


def has_extension(path: str, extensions: tuple[str, ...]) -> bool:
    """Whether `path` ends in one of `extensions` (any case); no extensions means any file."""
    return not extensions or path.lower().endswith(tuple(e.lower() for e in extensions))


def decode_image(data: bytes, config: ImageConfig) -> DecodedImage:
    """The image in `data` as the model's mode and size; raises ImageRejected saying why not."""
    if not data:
        raise ImageRejected(EMPTY_FILE, "the file is empty (0 bytes)")
    with _open(data, config.max_pixels) as image:
        known = {"format": image.format, "mode": image.mode, "size": list(image.size)}
        _load(image, data, known)
        converted = _to_mode(image, config.mode, known)
        sized = _to_size(converted, config, known)
        pixels = np.asarray(sized, dtype=np.uint8).reshape(
            config.height, config.width, CHANNELS[config.mode]
        )
    intensity = pixels / 255.0
    features = {
        "file_bytes": float(len(data)),
        "format": known["format"],
        "height": float(known["size"][1]),
        "mean_intensity": float(intensity.mean()),
        "mode": known["mode"],
        "std_intensity": float(intensity.std()),
        "width": float(known["size"][0]),
    }
    return DecodedImage(pixels, features)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse decompression bombs before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except Image.DecompressionBombError as err:  # beyond Pillow's own hard limit
        raise ImageRejected(TOO_MANY_PIXELS, f"refused as a decompression bomb: {err}") from err
    except Exception as err:  # header parsers raise OSError, SyntaxError, struct.error, ...
        signature = file_signature(data)
        if signature is None:
            raise ImageRejected(
                NOT_AN_IMAGE, f"not an image Pillow can decode as one of {list(DECODERS)}"
            ) from err
        raise _damaged(err, data, {"format": signature}) from err
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageRejected(
            TOO_MANY_PIXELS,
            f"{width} x {height} = {width * height} pixels is more than image.max_pixels "
            f"({max_pixels}): refused undecoded (a possible decompression bomb)",
            {"format": image.format, "mode": image.mode, "size": [width, height]},
        )
    return image


def _load(image: Image.Image, data: bytes, known: dict) -> None:
    """Decode the pixels now: a truncated or damaged file fails here, not later."""
    try:
        image.load()
    except Exception as err:  # decoders raise OSError, SyntaxError, EOFError, zlib errors, ...
        raise _damaged(err, data, known) from err


def _damaged(err: Exception, data: bytes, known: dict) -> ImageRejected:
    """A file of a known format that fails to decode: truncated when the file itself shows
    it (it lacks its format's end marker, or is shorter than its header says) or the decoder
    ran out of data; otherwise corrupt. Pillow's own error alone depends on where the cut
    falls (a cut in a header reads as an unknown format)."""
    text = f"{type(err).__name__}: {err}"
    ran_out = isinstance(err, EOFError) or "truncated" in str(err).lower()
    if ran_out or ends_early(data, known.get("format")):
        return ImageRejected(TRUNCATED_IMAGE, f"the file is cut short ({text})", known)
    return ImageRejected(CORRUPT_IMAGE, f"the image data cannot be decoded ({text})", known)


def file_signature(data: bytes) -> str | None:
    """The format named by the file's first bytes (its "magic number"), if it is one we read."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    # "BM" alone starts too much text: also require a known BMP info-header size.
    if data.startswith(b"BM") and int.from_bytes(data[14:18], "little") in _BMP_HEADERS:
        return "BMP"
    return None


_BMP_HEADERS = (12, 16, 40, 52, 56, 64, 108, 124)


def ends_early(data: bytes, fmt: str | None) -> bool:
    """Whether the file ends before its format says it does (TIFF cannot tell: False)."""
    if fmt == "PNG":
        return b"IEND" not in data[-64:]
    if fmt == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "GIF":
        return not data.endswith(b";")
    if fmt == "BMP":
        return int.from_bytes(data[2:6], "little") > len(data)
    if fmt == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


def _to_mode(image: Image.Image, target: str, known: dict) -> Image.Image:
    """The image in `target` mode when that loses nothing; else ImageRejected (wrong_mode).

    Bilevel (1) and grey (L) are exact in both modes; a palette (P) is exact in RGB, and in
    L when every colour used is grey (as is RGB with equal channels, e.g. a grey WebP).
    """
    mode = image.mode
    if mode in ("L", "1"):
        return image.convert(target)
    if mode == "P" and "transparency" in image.info:
        raise _wrong_mode(mode, target, "a palette with transparency (alpha)", known)
    if mode not in ("P", "RGB"):
        raise _wrong_mode(mode, target, _why_refused(mode), known)
    rgb = image.convert("RGB")
    if target == "RGB":
        return rgb
    channels = np.asarray(rgb)
    if (channels[..., 0] == channels[..., 1]).all() and (
        channels[..., 1] == channels[..., 2]
    ).all():
        return Image.fromarray(np.ascontiguousarray(channels[..., 0]), mode="L")
    raise _wrong_mode(mode, target, "a colour image where the model reads grey (L)", known)


def _why_refused(mode: str) -> str:
    if mode in _ALPHA_MODES:
        return "an alpha channel: flattening it onto a background would be a guess"
    if mode.startswith("I"):
        return "16/32-bit integer pixels: scaling them to 8 bits would be a guess about their range"
    return _REFUSED_WHY.get(mode, "a mode vaepipe does not convert")


def _wrong_mode(mode: str, target: str, why: str, known: dict) -> ImageRejected:
    return ImageRejected(
        WRONG_MODE, f"mode {mode} is {why}; the model reads {target} images", known
    )


def _to_size(image: Image.Image, config: ImageConfig, known: dict) -> Image.Image:
    size = (config.width, config.height)
    if image.size == size:
        return image
    if not config.resize:
        width, height = image.size
        raise ImageRejected(
            WRONG_SIZE,
            f"the image is {width} x {height} (width x height), the model reads "
            f"{config.width} x {config.height}; set image.resize: true to resize",
            known,
        )
    # Pillow antialiases when it shrinks (all filters but NEAREST).
    return image.resize(size, Image.Resampling.BILINEAR)


# ---------------------------------------------------------------------------- Beam reading


def read_image_file(path: str, size: int, read, config: ImageConfig) -> tuple | DeadLetter:
    """One matched file -> (path, raw, features, pixels) or a DeadLetter.

    `read` returns the file's bytes; it is not called for a file refused by its extension
    or its (zero) size, so such files are never opened.
    """
    known: dict = {"path": path, "bytes": size}
    try:
        if not has_extension(path, config.extensions):
            raise ImageRejected(
                UNSUPPORTED_EXTENSION,
                f"the extension is not one of image.extensions {list(config.extensions)}",
            )
        if size == 0:
            raise ImageRejected(EMPTY_FILE, "the file is empty (0 bytes)")
        data = read()
        known["bytes"] = len(data)
        image = decode_image(data, config)
    except ImageRejected as rejected:
        raw = json.dumps({**known, **rejected.known})
        return DeadLetter(path, path, STAGE, rejected.reason, f"{path}: {rejected.message}", raw)
    except OSError as err:  # the file system could not give us the bytes
        message = f"{path}: cannot read the file: {err}"
        return DeadLetter(path, path, STAGE, UNREADABLE_FILE, message, json.dumps(known))
    raw = json.dumps({**known, **_summary(image.features)})
    return path, raw, image.features, image.pixels


def _summary(features: dict) -> dict:
    return {
        "format": features["format"],
        "mode": features["mode"],
        "size": [int(features["width"]), int(features["height"])],
    }


def to_chunk(items: list[tuple], source: str) -> RecordChunk:
    """Decoded images -> one RecordChunk (frame: the TFDV features and the pixels)."""
    frame = pd.DataFrame([features for _, _, features, _ in items], columns=list(FEATURE_KINDS))
    frame[PIXELS] = pd.Series([pixels for *_, pixels in items], dtype=object)
    return RecordChunk(
        source=source,
        record_ids=[path for path, *_ in items],
        raw=[raw for _, raw, *_ in items],
        frame=frame,
    )


class ReadImages(beam.PTransform):
    """File pattern -> {"records": RecordChunks of up to `chunk_rows` images,
    "dead_letter": DeadLetters}; every matched file is counted as read exactly once."""

    def __init__(self, pattern: str, config: ImageConfig, chunk_rows: int):
        super().__init__()
        if pattern.startswith("bq://"):
            raise ValueError(f"data.kind image reads image files, not BigQuery: {pattern}")
        self._pattern = pattern
        self._config = config
        self._chunk_rows = chunk_rows

    def expand(self, pbegin):
        decoded = (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(image_pattern(self._pattern))
            | "ReadMatches" >> fileio.ReadMatches()
            | "Reshuffle" >> beam.Reshuffle()  # spread files over workers before decoding
            | "DecodeImages"
            >> beam.ParDo(_DecodeImageDoFn(self._config)).with_outputs(DEAD, main="images")
        )
        records = (
            decoded.images
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._chunk_rows)
            | "ToChunks" >> beam.Map(to_chunk, self._pattern)
        )
        return {"records": records, DEAD: decoded[DEAD]}


class _DecodeImageDoFn(beam.DoFn):
    """One file -> a decoded image or a dead letter; counts both."""

    def __init__(self, config: ImageConfig):
        self._config = config
        self._rows_read = metrics.counter(metrics.ROWS_READ)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        meta = readable.metadata
        result = read_image_file(meta.path, meta.size_in_bytes, readable.read, self._config)
        self._rows_read.inc()
        if isinstance(result, DeadLetter):
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD, result)
        else:
            yield result
