"""NSL-KDD detection benchmark: vaepipe (through its CLI) vs IsolationForest and kNN.

Protocol: the normal rows of KDDTrain+_20Percent are split 70/30 by seed; every detector is fit
on the 70% normal rows only; the held-out 30% normal rows and all attack rows are scored.
Reports AUROC, average precision, and the flagged fraction of held-out normal rows (vaepipe's
threshold is calibrated to scoring.target_fpr = 0.01).

    python benchmarks/nsl_kdd.py [--data ../shared/data/nsl_kdd] [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from common import SHARED_DATA, read_by_id, vaepipe_score, vaepipe_train
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors

DEFAULT_DATA = SHARED_DATA / "nsl_kdd"
NOT_FEATURES = ("id", "label", "difficulty")
CATEGORICAL = ("protocol_type", "service", "flag")
EXCLUDE_SET = "data.exclude_columns=[label, difficulty]"


def load(data_dir: Path) -> pd.DataFrame:
    names = [n.strip() for n in (data_dir / "columns.txt").read_text().splitlines() if n.strip()]
    frame = pd.read_csv(data_dir / "KDDTrain+_20Percent.txt", header=None, names=names)
    frame.insert(0, "id", np.arange(len(frame)))
    return frame


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    normal = frame[frame.label == "normal"]
    order = rng.permutation(len(normal))
    cut = int(0.7 * len(normal))
    test = pd.concat([normal.iloc[order[cut:]], frame[frame.label != "normal"]])
    return normal.iloc[order[:cut]], test


def run_vaepipe(
    train: pd.DataFrame, test: pd.DataFrame, work: Path, seed: int, overrides: list[str]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Train on `train`, score `test` through the CLI: (scores, flags, train seconds)."""
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    sets = ["data.id_column=id", EXCLUDE_SET, f"train.seed={seed}", *overrides]
    seconds = vaepipe_train(work / "train.csv", work / "model", sets)
    vaepipe_score(work / "model", work / "test.csv", work / "scores")
    flags = read_by_id(work / "scores" / "flags", test.id)
    return flags.score.to_numpy(), flags.is_anomaly.to_numpy(), seconds


def peer_features(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One-hot categories + standardised log1p numbers: the usual hand preprocessing."""
    both = pd.concat([train, test]).drop(columns=list(NOT_FEATURES))
    both = pd.get_dummies(both, columns=list(CATEGORICAL), dtype=float)
    both = np.log1p(both.clip(lower=0))
    values = both.to_numpy(dtype=np.float64)
    fit = values[: len(train)]
    mean, std = fit.mean(axis=0), fit.std(axis=0) + 1e-9
    values = (values - mean) / std
    return values[: len(train)], values[len(train) :]


def run_peers(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    x_train, x_test = peer_features(train, test)
    forest = IsolationForest(random_state=seed).fit(x_train)
    knn = NearestNeighbors(n_neighbors=5).fit(x_train)
    return {
        "IsolationForest": -forest.score_samples(x_test),
        "kNN (k=5, mean dist.)": knn.kneighbors(x_test)[0].mean(axis=1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", action="append", default=[], help="vaepipe config override")
    args = parser.parse_args()
    if not (args.data / "KDDTrain+_20Percent.txt").exists():
        sys.exit(f"NSL-KDD not found in {args.data}: pass --data")
    frame = load(args.data)
    rows = []
    for seed in args.seeds:
        train, test = split(frame, seed)
        labels = (test.label != "normal").to_numpy().astype(int)
        with tempfile.TemporaryDirectory(prefix="vaepipe-nsl-") as work:
            scores, flagged, seconds = run_vaepipe(train, test, Path(work), seed, args.set)
        normal_flag_rate = flagged[labels == 0].mean()
        rows.append(_row("vaepipe", seed, labels, scores, normal_flag_rate, seconds))
        for name, peer_scores in run_peers(train, test, seed).items():
            rows.append(_row(name, seed, labels, peer_scores, float("nan"), float("nan")))
    table = pd.DataFrame(rows)
    summary = table.groupby("method", sort=False)[["auroc", "ap", "normal_flag_rate"]].mean()
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print()
    print(summary.to_markdown(floatfmt=".4f"))
    print(f"\nmachine: {os.cpu_count()} cores; train rows {len(train)}, test rows {len(test)}")


def _row(method, seed, labels, scores, flag_rate, seconds) -> dict:
    return {
        "method": method,
        "seed": seed,
        "auroc": roc_auc_score(labels, scores),
        "ap": average_precision_score(labels, scores),
        "normal_flag_rate": flag_rate,
        "train_seconds": seconds,
    }


if __name__ == "__main__":
    main()
