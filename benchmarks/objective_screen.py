"""Objective screen: vaepipe with other config choices, in process through the Python API, on
ADBench sets.

A quick way to compare choices before a full CLI run (adbench.py, corpus.py --via cli): the
same split as adbench.py, `vaepipe.fit` on the train split (anomalies included, as the
protocol says) with the variant's settings, and AUROC of the score and of its two terms on the
test split. The API runs the product's own stages (typing, TFDV statistics, encoding,
training, calibration) without Beam, so a variant here is the product with that setting; the
published figures still come from the CLI.

    python benchmarks/objective_screen.py --sets cardio letter --seeds 1 \\
        --variant default '{}' --variant per_feature '{"numeric_variance": "feature"}'

Variant keys: any config key, as the API takes it (`latent_dim`, `model.beta`,
`train__batch_size`, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

os.environ.setdefault("KERAS_BACKEND", "jax")  # fastest for this small model on CPU
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adbench import DEFAULT_DATA, find_sets, load_split  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import vaepipe  # noqa: E402


def frame(x) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"f{j}" for j in range(x.shape[1])])


def run(path: Path, seed: int, variant: dict) -> dict[str, float]:
    x_train, x_test, _, y_test = load_split(path, seed)
    detector = vaepipe.fit(frame(x_train), train__seed=seed, **variant)
    flags = detector.score(frame(x_test))
    return {
        name: roc_auc_score(y_test, flags[name]) for name in ("score", "reconstruction_nll", "kl")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", nargs="+", help="set names (stems or substrings); default all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--variant", nargs=2, action="append", metavar=("NAME", "JSON"),
        help="a named variant: NAME and a JSON object of config settings (default: defaults)",
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
