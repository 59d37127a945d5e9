"""Synthetic 28 x 28 grey images for tests and demos: pen strokes drawn with numpy.

`strokes` are the normal kind: one slightly slanted vertical stroke of varying position,
length and thickness (like a handwritten 1). `rings` are another kind (like a 0). Both are
drawn with soft edges on a black background, as scanned digits are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.sinks.images import png_bytes

SIZE = 28


def _soft(distance: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Ink from a distance to the pen's centre line: 1 inside, fading over one pixel."""
    return np.clip(half_width + 0.5 - distance, 0.0, 1.0)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    return y[None], x[None]


def strokes(n: int, seed: int) -> np.ndarray:
    """`n` images of one slanted vertical stroke, uint8 [n, 28, 28]."""
    rng = np.random.default_rng(seed)
    y, x = _grid()
    top = rng.uniform(3, 7, (n, 1, 1))
    bottom = rng.uniform(21, 25, (n, 1, 1))
    centre = rng.uniform(11, 17, (n, 1, 1))
    slant = rng.uniform(-0.25, 0.25, (n, 1, 1))
    half = rng.uniform(1.0, 2.0, (n, 1, 1))
    line_x = centre + slant * (y - 14)
    # distance to the segment: horizontal offset inside it, to the nearer end outside
    beyond = np.maximum(np.maximum(top - y, y - bottom), 0.0)
    distance = np.hypot(x - line_x, beyond)
    return np.rint(255 * _soft(distance, half)).astype(np.uint8)


def rings(n: int, seed: int) -> np.ndarray:
    """`n` images of one ring (an ellipse outline), uint8 [n, 28, 28]."""
    rng = np.random.default_rng(seed)
    y, x = _grid()
    cy, cx = rng.uniform(12, 16, (2, n, 1, 1))
    ry, rx = rng.uniform(7, 10, (n, 1, 1)), rng.uniform(4, 7, (n, 1, 1))
    half = rng.uniform(0.8, 1.6, (n, 1, 1))
    radius = np.hypot((y - cy) / ry, (x - cx) / rx)
    distance = np.abs(radius - 1.0) * np.minimum(ry, rx)
    return np.rint(255 * _soft(distance, half)).astype(np.uint8)


def write_pngs(folder: Path, images: np.ndarray, prefix: str) -> list[Path]:
    """One PNG per image, `<prefix>-00000.png` ...; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}-{i:05d}.png"
        path.write_bytes(png_bytes(image[..., None]))
        paths.append(path)
    return paths
