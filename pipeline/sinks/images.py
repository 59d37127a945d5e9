"""Image files out: decoded (or sampled) images as PNG files."""

from __future__ import annotations

import hashlib
import io
import posixpath
import re

import numpy as np
from PIL import Image


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 [height, width, 1 or 3] pixels as a PNG file."""
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decoded_image_name(record_id: str) -> str:
    """A file name for the image decoded from record `record_id` (an input file's path): the
    input's name, and a hash of its full path so that equal names in other folders stay apart."""
    stem = posixpath.splitext(posixpath.basename(record_id.rstrip("/")))[0]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80] or "image"
    digest = hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:12]
    return f"{stem}-{digest}.png"
