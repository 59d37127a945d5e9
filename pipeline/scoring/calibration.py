"""Calibration on held-out normal records: the threshold, the p-value reference, per-feature
baselines and the latent-code quantisation (no labels needed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from configs import VaepipeConfig
from pipeline.artifacts.bundle import Calibration
from pipeline.scoring.core import score_batches

# int8 codes span +-127 steps; this many posterior standard deviations of headroom past the
# calibration range keeps unusual (anomalous) records from clipping.
CODE_HEADROOM = 1.5


def calibrate(
    model: Any, batches: Iterable[np.ndarray], config: VaepipeConfig
) -> tuple[Calibration, np.ndarray]:
    """The calibration of `model` on the packed calibration rows, and the sorted scores.

    The threshold is the `1 - scoring.target_fpr` quantile of the calibration scores; a
    feature's baseline is its median NLL there (contributions are relative to it).
    """
    parts: dict[str, list] = {"score": [], "feature_nll": [], "z_mean": []}
    for batch in batches:
        out = score_batches(model, np.asarray(batch), config.scoring.batch_size)
        for key in parts:
            parts[key].append(out[key])
    scores = np.sort(np.concatenate(parts["score"]).astype(np.float64))
    feature_nll = np.concatenate(parts["feature_nll"])
    z_mean = np.concatenate(parts["z_mean"])
    code_scale = np.maximum(np.abs(z_mean).max(axis=0), 1e-6) * CODE_HEADROOM / 127.0
    calibration = Calibration(
        target_fpr=config.scoring.target_fpr,
        threshold=threshold_for(scores, config.scoring.target_fpr),
        feature_baseline=tuple(float(v) for v in np.median(feature_nll, axis=0)),
        code_scale=tuple(float(v) for v in code_scale),
        n_calibration=int(len(scores)),
    )
    return calibration, scores


def threshold_for(sorted_scores: np.ndarray, target_fpr: float) -> float:
    """The score above which a `target_fpr` share of the calibration scores lies."""
    return float(np.quantile(sorted_scores, 1.0 - target_fpr))
