"""ADBench detection benchmark: vaepipe (through its CLI) vs IsolationForest, PCA, kNN, PyOD VAE.

ADBench's unsupervised protocol on every `.npz` (X, y) in a folder: sets over 10,000 rows are
subsampled to 10,000 (seeded), then a stratified 70/30 split per seed; every detector is fit on
the train split without labels (anomalies included) and scored on the test split; AUROC and
average precision per (set, seed). vaepipe gets the raw values as CSV (f0..fN plus `id`) and
runs `vaepipe train` with configs/tabular.yaml (only `data.id_column` and `train.seed` set),
then `vaepipe score`. Peers get ADBench's min-max scaling (fit on the train split).
NSL-KDD is added with nsl_kdd.py's protocol (normal-only training, mixed types).

    python benchmarks/adbench.py [DATA_DIR] [--sets cardio WBC] [--seeds 1 2 3] [--quick]
        [--no-nsl-kdd] [--results /tmp/adbench.csv] [--resume]
    python benchmarks/adbench.py --report-from /tmp/seed1.csv /tmp/seed2.csv   # merge runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from common import SHARED_DATA, log, machine, markdown, read_by_id, vaepipe_score, vaepipe_train
from common import write_matrix_csv as write_csv
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import MinMaxScaler

DEFAULT_DATA = SHARED_DATA / "adbench"
MAX_ROWS = 10_000
PCA_VARIANCE = 0.9  # PCA keeps the components explaining 90% of the train variance
KNN_K = 5
QUICK_SETS = ("42_WBC", "4_breastw", "29_Pima")
QUICK_EPOCHS = 3
VAEPIPE = "vaepipe"
PEERS = ("IsolationForest", "PCA (90% var.)", "kNN (k=5)", "PyOD VAE")
METHODS = (VAEPIPE, *PEERS)
NSL_KDD = "NSL-KDD (normal-only)"


def find_sets(folder: Path, wanted: list[str] | None) -> list[Path]:
    """The `.npz` files in `folder`, in ADBench order; `wanted` matches stems or substrings."""
    files = sorted(folder.glob("*.npz"), key=lambda p: (int(p.stem.split("_")[0]), p.stem))
    if wanted:
        stems = {f.stem for f in files}
        files = [f for f in files if any(f.stem == w or (w not in stems and w in f.stem)
                                         for w in wanted)]  # fmt: skip
    return files


def load_split(path: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ADBench's split: subsample to 10,000 rows (seeded), stratified 70/30 split."""
    data = np.load(path)
    x, y = data["X"], data["y"].astype(int)
    if len(y) > MAX_ROWS:
        keep = np.random.RandomState(seed).choice(len(y), MAX_ROWS, replace=False)
        x, y = x[keep], y[keep]
    return train_test_split(x, y, test_size=0.3, shuffle=True, stratify=y, random_state=seed)


def vaepipe_scores(
    x_train: np.ndarray, x_test: np.ndarray, seed: int, overrides: list[str]
) -> tuple[np.ndarray, float]:
    """CSV -> `vaepipe train` -> `vaepipe score`; the test scores and the wall seconds."""
    with tempfile.TemporaryDirectory(prefix="vaepipe-adbench-") as tmp:
        work = Path(tmp)
        write_csv(x_train, work / "train.csv")
        test_ids = np.arange(len(x_test)) + len(x_train)
        write_csv(x_test, work / "test.csv", test_ids)
        sets = ["data.id_column=id", f"train.seed={seed}", *overrides]
        seconds = vaepipe_train(work / "train.csv", work / "model", sets)
        seconds += vaepipe_score(work / "model", work / "test.csv", work / "scores")
        flags = read_by_id(work / "scores" / "flags", test_ids)
    return flags.score.to_numpy(), seconds


def pca_error(x_train: np.ndarray, x_test: np.ndarray, variance: float) -> np.ndarray:
    """Squared reconstruction error with the components explaining `variance` of the train
    split's variance (at most width - 1, so some residual is left to score)."""
    pca = PCA().fit(x_train)
    explained = np.cumsum(pca.explained_variance_ratio_)
    components = int(np.searchsorted(explained, variance) + 1)
    components = max(1, min(components, x_train.shape[1] - 1))
    pca = PCA(n_components=components).fit(x_train)
    rebuilt = pca.inverse_transform(pca.transform(x_test))
    return ((x_test - rebuilt) ** 2).sum(axis=1)


def pyod_vae(x_train: np.ndarray, x_test: np.ndarray, seed: int, epochs: int | None) -> np.ndarray:
    """PyOD's VAE with its defaults (only the seed, quiet output, and --quick's epochs)."""
    import torch
    from pyod.models.vae import VAE

    # One intra-op thread: on 2 shared cores torch's default 2 threads ran ~19x slower per step.
    torch.set_num_threads(1)
    extra = {} if epochs is None else {"epoch_num": epochs}
    model = VAE(random_state=seed, verbose=0, **extra).fit(x_train)
    return model.decision_function(x_test)


def isolation_forest(x_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """scikit-learn IsolationForest with its defaults; higher = more anomalous."""
    return -IsolationForest(random_state=seed).fit(x_train).score_samples(x_test)


def knn_distance(x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Mean distance to the KNN_K nearest train rows."""
    return NearestNeighbors(n_neighbors=KNN_K).fit(x_train).kneighbors(x_test)[0].mean(axis=1)


def peer_scores(
    x_train: np.ndarray, x_test: np.ndarray, seed: int, epochs: int | None
) -> dict[str, tuple[np.ndarray, float]]:
    """Every peer's test scores (higher = more anomalous) and fit+score seconds."""
    runs: dict[str, Callable[[], np.ndarray]] = {
        "IsolationForest": lambda: isolation_forest(x_train, x_test, seed),
        "PCA (90% var.)": lambda: pca_error(x_train, x_test, PCA_VARIANCE),
        "kNN (k=5)": lambda: knn_distance(x_train, x_test),
        "PyOD VAE": lambda: pyod_vae(x_train, x_test, seed, epochs),
    }
    out = {}
    for name, run in runs.items():
        started = time.perf_counter()
        scores = run()
        out[name] = (scores, time.perf_counter() - started)
    return out


def minmax(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ADBench's scaling for the peers, fit on the train split."""
    scaler = MinMaxScaler().fit(x_train.astype(np.float64))
    return scaler.transform(x_train.astype(np.float64)), scaler.transform(x_test.astype(np.float64))


def result_rows(
    name: str, seed: int, y_test: np.ndarray, scored: dict[str, tuple[np.ndarray, float]]
) -> list[dict]:
    return [
        {
            "set": name,
            "seed": seed,
            "method": method,
            "auroc": roc_auc_score(y_test, scores),
            "ap": average_precision_score(y_test, scores),
            "seconds": seconds,
        }
        for method, (scores, seconds) in scored.items()
    ]


def run_adbench_set(
    path: Path, seed: int, overrides: list[str], epochs: int | None, peers: bool = True
) -> list[dict]:
    x_train, x_test, _, y_test = load_split(path, seed)
    scored = {VAEPIPE: vaepipe_scores(x_train, x_test, seed, overrides)}
    if peers:
        scored.update(peer_scores(*minmax(x_train, x_test), seed, epochs))
    return result_rows(path.stem, seed, y_test, scored)


def run_nsl_kdd(
    data_dir: Path, seed: int, overrides: list[str], epochs: int | None, peers: bool = True
) -> list[dict]:
    """nsl_kdd.py's protocol (normal-only training, its hand preprocessing for the peers)."""
    import nsl_kdd

    frame = nsl_kdd.load(data_dir)
    train, test = nsl_kdd.split(frame, seed)
    y_test = (test.label != "normal").to_numpy().astype(int)
    with tempfile.TemporaryDirectory(prefix="vaepipe-nsl-") as work:
        started = time.perf_counter()
        scores, _, _ = nsl_kdd.run_vaepipe(train, test, Path(work), seed, overrides)
        scored = {VAEPIPE: (scores, time.perf_counter() - started)}
    if peers:
        scored.update(peer_scores(*nsl_kdd.peer_features(train, test), seed, epochs))
    return result_rows(NSL_KDD, seed, y_test, scored)


def per_set_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Sets x methods, the metric averaged over seeds; best peer and vaepipe's gap to it."""
    table = results.pivot_table(index="set", columns="method", values=metric, aggfunc="mean")
    table = table[[m for m in METHODS if m in table.columns]]
    peers = [m for m in PEERS if m in table.columns]
    if peers and VAEPIPE in table.columns:
        table["best peer"] = table[peers].max(axis=1)
        table["vaepipe - best peer"] = table[VAEPIPE] - table["best peer"]
    order = {s: i for i, s in enumerate(dict.fromkeys(results.set))}
    return table.sort_index(key=lambda idx: idx.map(order))


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean AUROC, mean AP, mean rank by AUROC (1 = best), sets and seconds."""
    auroc = per_set_table(results, "auroc")[[m for m in METHODS if m in set(results.method)]]
    ap = per_set_table(results, "ap")[auroc.columns]
    ranks = auroc.rank(axis=1, ascending=False, method="average")
    seconds = results.groupby("method").seconds.mean()
    return pd.DataFrame(
        {
            "mean AUROC": auroc.mean(),
            "mean AP": ap.mean(),
            "mean rank (AUROC)": ranks.mean(),
            "sets": auroc.count().astype(int).astype(str),
            "mean s per fit+score": seconds.reindex(auroc.columns),
        }
    )


def report(results: pd.DataFrame) -> str:
    """Markdown: per-set AUROC and AP, summary over the ADBench sets, NSL-KDD on its own."""
    adbench = results[results.set != NSL_KDD]
    parts = []
    if len(adbench):
        seeds = sorted(adbench.seed.unique())
        parts += [
            f"AUROC (test split, mean over seeds {seeds}):\n",
            markdown(per_set_table(adbench, "auroc"), index=True),
            "",
            "Average precision:\n",
            markdown(per_set_table(adbench, "ap"), index=True),
            "",
            f"Summary over {adbench.set.nunique()} ADBench sets:\n",
            markdown(summary_table(adbench), index=True),
            "",
            _targets(per_set_table(adbench, "auroc")),
        ]
    nsl = results[results.set == NSL_KDD]
    if len(nsl):
        table = nsl.groupby("method", sort=False)[["auroc", "ap", "seconds"]].mean()
        caption = f"{NSL_KDD}, seeds {sorted(nsl.seed.unique())}:\n"
        parts += ["", caption, markdown(table, index=True)]
    return "\n".join(parts)


def _targets(auroc: pd.DataFrame) -> str:
    if "best peer" not in auroc.columns:
        return ""
    peer_means = auroc[[p for p in PEERS if p in auroc.columns]].mean()
    best = peer_means.idxmax()
    gap = auroc["vaepipe - best peer"]
    worst = gap.idxmin()
    return (
        f"Targets: vaepipe mean AUROC {auroc[VAEPIPE].mean():.4f} vs best peer mean "
        f"({best}) {peer_means.max():.4f}; sets more than 0.10 below the best peer on that set: "
        f"{int((gap < -0.10).sum())} (worst: {worst}, {gap[worst]:+.4f})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="folder of .npz")
    parser.add_argument("--sets", nargs="+", help="set names (stems or substrings); default all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", action="append", default=[], help="vaepipe config override")
    parser.add_argument("--quick", action="store_true", help="3 small sets, seed 1, 3 epochs")
    parser.add_argument("--no-nsl-kdd", dest="nsl_kdd", action="store_false")
    parser.add_argument(
        "--no-peers", dest="peers", action="store_false", help="vaepipe only (e.g. a config A/B)"
    )
    parser.add_argument("--nsl-kdd-data", type=Path, default=SHARED_DATA / "nsl_kdd")
    parser.add_argument("--results", type=Path, help="CSV of raw rows, appended as runs finish")
    parser.add_argument("--resume", action="store_true", help="skip (set, seed) in --results")
    parser.add_argument(
        "--report-from", type=Path, nargs="+", help="only print the report of these result CSVs"
    )
    args = parser.parse_args()
    if args.quick:
        args.sets = args.sets or list(QUICK_SETS)
        args.seeds = [args.seeds[0]]
        args.set = [f"train.epochs={QUICK_EPOCHS}", *args.set]
        args.nsl_kdd = False
    return args


def main() -> None:
    args = parse_args()
    if args.report_from:  # e.g. seeds run by separate processes, merged
        print(report(pd.concat([pd.read_csv(path) for path in args.report_from])))
        return
    files = find_sets(args.data, args.sets)
    if not files:
        sys.exit(f"no ADBench .npz sets in {args.data} matching {args.sets}: pass DATA_DIR")
    epochs = QUICK_EPOCHS if args.quick else None
    tasks: list[tuple[str, Callable[[int], list[dict]]]] = [
        (f.stem, lambda seed, f=f: run_adbench_set(f, seed, args.set, epochs, args.peers))
        for f in files
    ]
    if args.nsl_kdd and (args.nsl_kdd_data / "KDDTrain+_20Percent.txt").exists():
        tasks.append(
            (
                NSL_KDD,
                lambda seed: run_nsl_kdd(args.nsl_kdd_data, seed, args.set, epochs, args.peers),
            )
        )
    print(f"machine: {machine()}\n")
    results = _load_previous(args)
    for seed in args.seeds:  # every set at the first seed first: a partial run covers them all
        for name, task in tasks:
            if len(results) and ((results.set == name) & (results.seed == seed)).any():
                continue
            log(f"{name} seed {seed}")
            rows = pd.DataFrame(task(seed))
            log(", ".join(f"{r.method} {r.auroc:.4f}" for r in rows.itertuples()))
            results = pd.concat([results, rows], ignore_index=True)
            if args.results:
                results.to_csv(args.results, index=False)
    print(report(results))


def _load_previous(args: argparse.Namespace) -> pd.DataFrame:
    if args.resume and args.results and args.results.exists():
        return pd.read_csv(args.results)
    return pd.DataFrame()


if __name__ == "__main__":
    main()
