"""Objective screen: vaepipe's VAE with other objective/encoding choices, in process, on ADBench.

A quick way to compare model choices before a full CLI run (adbench.py): the same split as
adbench.py, `pipeline/encoding.py`'s TabularEncoding with its centre and scale from exact
NumPy quantiles instead of TFDV's, `vae_model.fit_vae` with configs/tabular.yaml's training
defaults (10% of the train split held out for early stopping, no calibration split), and
AUROC of the score and of its two terms on the test split. Figures here are a screen, not the
product's: publish CLI figures.

    python benchmarks/objective_screen.py --sets cardio letter --seeds 1 \\
        --variant default '{}' --variant per_feature '{"numeric_variance": "feature"}'

Variant keys: scaling (iqr | std), numeric_variance (record | feature | fixed), beta,
min_log_var, latent_dim, hidden_units, kl_warmup_epochs, score_tolerance, batch_size, epochs,
min_steps (shrink the batch so an epoch has at least this many steps, to 16 rows at least;
16 as in the product, 1 = always batch_size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("KERAS_BACKEND", "jax")  # fastest for this small model on CPU
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
from adbench import DEFAULT_DATA, find_sets, load_split  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from configs.schema import TrainConfig  # noqa: E402
from pipeline.features.tabular_encoding import IQR_TO_STD, NumericSpec, TabularEncoding
from pipeline.jobs.train import effective_batch_size
from vae_model import VAE, FeatureLayout, fit_vae  # noqa: E402


def encoder(x_train: np.ndarray, scaling: str):
    """The product's TabularEncoding, its numeric specs fitted on `x_train` with NumPy."""
    center = np.median(x_train, axis=0)
    q25, q75 = np.quantile(x_train, [0.25, 0.75], axis=0)
    std = x_train.std(axis=0)
    scale = std if scaling == "std" else np.where(q75 - q25 > 1e-12, (q75 - q25) / IQR_TO_STD, std)
    scale = np.where(scale > 1e-12, scale, 1.0)
    names = [f"f{j}" for j in range(x_train.shape[1])]
    columns = zip(names, center, scale, strict=True)
    specs = tuple(NumericSpec(name, float(c), float(s)) for name, c, s in columns)
    encoding = TabularEncoding(numeric=specs, categorical=())
    return lambda x: encoding.encode(pd.DataFrame(x, columns=names))


def run(path: Path, seed: int, variant: dict) -> dict[str, float]:
    x_train, x_test, _, y_test = load_split(path, seed)
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = max(1, len(x_train) // 10)
    val, fit = x_train[order[:n_val]], x_train[order[n_val:]]
    encode = encoder(fit, variant.get("scaling", "std"))
    keras.utils.set_random_seed(seed)
    layout = FeatureLayout(numeric=tuple(f"f{j}" for j in range(x_train.shape[1])))
    model = VAE(
        layout.to_config(),
        latent_dim=variant.get("latent_dim", 8),
        hidden_units=tuple(variant.get("hidden_units", (128, 64))),
        beta=variant.get("beta", 1.0),
        kl_warmup_epochs=variant.get("kl_warmup_epochs", 5),
        min_log_var=variant.get("min_log_var", -6.0),
        numeric_variance=variant.get("numeric_variance", "record"),
        score_tolerance=variant.get("score_tolerance", 0.5),
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        fit_vae(model, encode(fit), encode(val), epochs=variant.get("epochs", 40),
                learning_rate=1e-3, patience=5, checkpoint_dir=checkpoints,
                batch_size=batch_size(len(fit), variant), print_fn=None)  # fmt: skip
    terms = model.score_terms(encode(x_test))
    return {
        name: roc_auc_score(y_test, keras.ops.convert_to_numpy(terms[name]))
        for name in ("score", "reconstruction_nll", "kl")
    }


def batch_size(rows: int, variant: dict) -> int:
    """The product's batch rule (`pipeline.train.effective_batch_size`) for this variant."""
    train = TrainConfig(
        batch_size=variant.get("batch_size", 256), min_steps_per_epoch=variant.get("min_steps", 16)
    )
    return effective_batch_size(rows, train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", nargs="+", help="set names (stems or substrings); default all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--variant", nargs=2, action="append", metavar=("NAME", "JSON"),
        help="a named variant: NAME and a JSON object of the keys above (default: defaults)",
    )  # fmt: skip
    args = parser.parse_args()
    variants = {name: json.loads(text) for name, text in (args.variant or [("default", "{}")])}
    results = []
    for name, variant in variants.items():
        for path in find_sets(args.data, args.sets):
            for seed in args.seeds:
                started = time.perf_counter()
                aurocs = run(path, seed, variant)
                row = {"variant": name, "set": path.stem, "seed": seed, **aurocs}
                print(json.dumps({**row, "s": round(time.perf_counter() - started, 1)}), flush=True)
                results.append(row)
    table = pd.DataFrame(results).pivot_table(index="set", columns="variant", values="score")
    print(table.round(4).to_markdown())
    print("\nmean AUROC of the score:", table.mean().round(4).to_dict())


if __name__ == "__main__":
    main()
