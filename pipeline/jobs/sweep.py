"""`vaepipe sweep`: the objective compared. One bundle per value of one config key, each
measured on the same records: the rate (KL) and distortion (reconstruction NLL) in bits per
record, the ELBO beside the importance-weighted bound, and the AUROC when labels are given.

Tables train and score in this process (`pipeline.jobs.in_process`), the same stages as the
CLI's jobs; each bundle is a complete model bundle under OUT/<key>=<value>/.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from configs import ConfigError
from configs.loader import parse_override
from pipeline.artifacts.bundle import load_bundle
from pipeline.core.fs import write_text
from pipeline.features.column_types import apply_kinds
from pipeline.features.encode import encode_chunk
from pipeline.jobs import in_process
from pipeline.jobs.settings import training_config

NATS_PER_BIT = math.log(2.0)
IWAE_ROWS = 2000  # records the IWAE bound is averaged over (it costs K decoder passes a record)
RESULTS = "sweep.json"


@dataclass(frozen=True)
class SweepPoint:
    """One bundle's figures, per record, on the evaluation records."""

    value: str
    model_dir: str
    rate_bits: float
    distortion_bits: float
    elbo_nats: float
    iwae_nats: float
    iwae_samples: int
    auroc: float | None


def swept_setting(overrides: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """(key, its values, the other overrides): the one `--set key=a,b,c` holding a list."""
    swept, fixed = [], []
    for item in overrides:
        key, _, raw = item.partition("=")
        text = raw.strip()
        if "," in text and not text.startswith(("[", "{", '"', "'")):
            swept.append((key.strip(), [v.strip() for v in text.split(",") if v.strip()]))
        else:
            fixed.append(item)
    if len(swept) != 1:
        names = [k for k, _ in swept]
        raise ConfigError(
            "sweep needs exactly one --set KEY=V1,V2,... to vary (others fix one value each). "
            f"Received varied keys: {names}"
        )
    key, values = swept[0]
    for value in values:
        parse_override(f"{key}={value}")  # a bad key or value fails before any training
    return key, values, fixed


def sweep(
    files: Sequence[str],
    overrides: Sequence[str],
    input_pattern: str,
    output_dir: str,
    label_column: str | None = None,
    eval_input: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[SweepPoint]:
    """Train one bundle per value of the swept key and measure each; writes sweep.json and
    sweep.html under `output_dir`."""
    key, values, fixed = swept_setting(overrides)
    if label_column:
        base = training_config(files, fixed)
        if label_column not in base.data.exclude_columns:
            excluded = [*base.data.exclude_columns, label_column]
            fixed = [*fixed, f"data.exclude_columns={json.dumps(excluded)}"]
    points = []
    for value in values:
        config = training_config(files, [*fixed, f"{key}={value}"])
        model_dir = os.path.join(output_dir, f"{key}={value}")
        echo(f"[{len(points) + 1}/{len(values)}] {key}={value}: training")
        in_process.train(input_pattern, model_dir, config, echo=lambda _: None)
        point = measure(model_dir, eval_input or input_pattern, value, label_column)
        echo(
            f"      rate {point.rate_bits:.2f} bits, distortion {point.distortion_bits:.2f} bits, "
            f"ELBO {point.elbo_nats:.3f}, IWAE(K={point.iwae_samples}) {point.iwae_nats:.3f} nats"
            + (f", AUROC {point.auroc:.4f}" if point.auroc is not None else "")
        )
        points.append(point)
    write_text(os.path.join(output_dir, RESULTS), json.dumps([asdict(p) for p in points], indent=1))
    from pipeline.report.sweep import write_sweep_page

    page = write_sweep_page(key, points, os.path.join(output_dir, "sweep.html"))
    echo(f"sweep: {page}")
    return points


def measure(model_dir: str, data: str, value: str, label_column: str | None) -> SweepPoint:
    """Rate, distortion, ELBO, IWAE and AUROC of one bundle on the records in `data`."""
    from pipeline.jobs.settings import model_config

    bundle = load_bundle(model_dir)
    config = model_config(model_dir)
    flags = in_process.score(bundle, data, config).flags.to_pandas()
    k = config.scoring.iwae_samples
    inputs = _inputs(bundle, data, config)[:IWAE_ROWS]
    # One set of K draws: each is a one-draw ELBO estimate; their log-mean-exp is the IWAE
    # bound, never below their mean (Jensen), so the two are compared on the same draws.
    weights = np.asarray(bundle.model.iwae_log_weights(inputs, k, seed=config.train.seed))
    elbo = float(np.mean(weights))
    top = weights.max(axis=0)
    iwae = float(np.mean(top + np.log(np.mean(np.exp(weights - top), axis=0))))
    auroc = None
    if label_column:
        from sklearn.metrics import roc_auc_score

        labels = flags[label_column].astype(float).astype(int)
        auroc = float(roc_auc_score(labels, flags["score"]))
    return SweepPoint(
        value=value,
        model_dir=model_dir,
        rate_bits=float(flags["kl"].mean()) / NATS_PER_BIT,
        distortion_bits=float(flags["reconstruction_nll"].mean()) / NATS_PER_BIT,
        elbo_nats=elbo,
        iwae_nats=iwae,
        iwae_samples=k,
        auroc=auroc,
    )


def _inputs(bundle, data, config) -> np.ndarray:
    exclude = tuple(config.data.exclude_columns)
    blocks = []
    for chunk, _ in in_process.read_chunks(data, config):
        if chunk is None:
            continue
        typed, _ = apply_kinds(chunk, bundle.encoding.kinds, exclude)
        if typed is not None:
            blocks.append(encode_chunk(typed, bundle.encoding, exclude).inputs)
    return np.concatenate(blocks).astype(np.float32)
