"""The image encoding: image records <-> the packed model input (data.kind image).

Each pixel channel is one feature, an intensity in [0, 1] (value / 255), in row-major
(row, column, channel) order, named `px_<row>_<col>` (grey) or `px_<row>_<col>_<r|g|b>`.
Pixels are always observed (mask 1). With `model.image_likelihood: bernoulli` they form the
layout's Bernoulli group (binary cross-entropy); with `gaussian` its numeric group (a learned
variance per pixel). Decoding gives back uint8 pixels: the mean intensity the decoder
predicts, rounded. Attribution sums pixel contributions over square patches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from configs.schema import VaepipeConfig
from pipeline.sources.images import CHANNELS, FEATURE_KINDS, PIXELS
from vae_model.layout import FeatureLayout

_CHANNEL_NAMES = {"L": ("",), "RGB": ("_r", "_g", "_b")}


@dataclass(frozen=True)
class ImageEncoding:
    """Images of one size and mode as model input, and back."""

    height: int
    width: int
    mode: str
    likelihood: str = "bernoulli"
    patch_size: int = 7

    @classmethod
    def from_config(cls, config: VaepipeConfig) -> ImageEncoding:
        image = config.image
        return cls(
            image.height, image.width, image.mode, config.model.image_likelihood, image.patch_size
        )

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @cached_property
    def columns(self) -> list[str]:
        """One name per pixel channel, in packed order."""
        return [
            f"px_{y}_{x}{c}"
            for y in range(self.height)
            for x in range(self.width)
            for c in _CHANNEL_NAMES[self.mode]
        ]

    @property
    def kinds(self) -> dict[str, str]:
        """The per-image features TFDV profiles and validates (not the pixels)."""
        return dict(FEATURE_KINDS)

    def layout(self) -> FeatureLayout:
        names = tuple(self.columns)
        if self.likelihood == "gaussian":
            return FeatureLayout(numeric=names)
        return FeatureLayout(bernoulli=names)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Packed float32 model input `[n, 2*width]`: intensities, then the (all-ones) mask."""
        n = len(frame)
        if n == 0:
            return np.zeros((0, 2 * len(self.columns)), dtype=np.float32)
        pixels = np.stack(frame[PIXELS].to_list()).reshape(n, -1)
        if pixels.shape[1] != len(self.columns):
            raise ValueError(
                f"images of {pixels.shape[1]} values each do not fit the model's "
                f"{self.height} x {self.width} {self.mode} input ({len(self.columns)} values)"
            )
        values = pixels.astype(np.float32) / 255.0
        return np.concatenate([values, np.ones_like(values)], axis=1)

    def decode(self, values: np.ndarray) -> pd.DataFrame:
        """Images from packed values `[n, width]` (intensities): a `pixels` column of uint8
        arrays `[height, width, channels]`, as the reader produces them."""
        intensity = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        pixels = np.rint(intensity * 255.0).astype(np.uint8).reshape(-1, *self.shape)
        return pd.DataFrame({PIXELS: pd.Series(list(pixels), dtype=object)})

    def contributions(
        self, feature_nll: np.ndarray, baseline: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        """Contribution of each square patch: the sum of its pixels' (NLL - baseline).

        A single pixel is too small to explain an image; a patch says where it differs.
        Patches at the right and bottom edges may be smaller.
        """
        excess = (feature_nll - baseline[None, :]).reshape(-1, *self.shape)
        p = self.patch_size
        sums, names = [], []
        for y in range(0, self.height, p):
            for x in range(0, self.width, p):
                sums.append(excess[:, y : y + p, x : x + p, :].sum(axis=(1, 2, 3)))
                names.append(f"y{y}:{min(y + p, self.height)} x{x}:{min(x + p, self.width)}")
        return np.stack(sums, axis=1), names

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ImageEncoding:
        return cls(**json.loads(text))
