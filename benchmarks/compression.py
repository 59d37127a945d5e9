"""Compression benchmark: bytes per record of vaepipe's latent codes vs reconstruction error,
against PCA with the same number of components (also stored as int8), at several code sizes.

For each data set and code size K (`--set model.latent_dim=K`): `vaepipe train` on a 70% split,
`vaepipe score` the other 30% (codes/ Parquet output), `vaepipe decode` those codes, and compare
the decoded records with the originals: standardized RMSE for numeric columns (per-column RMSE
divided by the column's train standard deviation, averaged over columns) and accuracy for
categorical columns. Sizes: the code (int8 x K bytes), the codes/ Parquet files on disk per
record (record_id included), the raw record as float32, and the gzip'd CSV of the features.
PCA: z-scored numbers and one-hot categories (train statistics), K components, codes quantised
to int8 per dimension like vaepipe's, categories decoded by argmax within each one-hot block.

    python benchmarks/compression.py [--sets 6_cardio 30_satellite 26_optdigits] [--dims 2 4 8 16]
        [--no-nsl-kdd] [--plot docs/compression.png] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import (
    ROOT,
    SHARED_DATA,
    TABULAR_CONFIG,
    feature_names,
    log,
    machine,
    markdown,
    read_by_id,
    vaepipe_decode,
    vaepipe_score,
    vaepipe_train,
)
from sklearn.decomposition import PCA

DEFAULT_SETS = ("6_cardio", "30_satellite", "26_optdigits")
DEFAULT_DIMS = (2, 4, 8, 16)
SEED = 1
QUICK_EPOCHS = 3
INT8_HEADROOM = 1.5  # vaepipe's int8 code scale: max |train code| * 1.5 / 127


@dataclass
class Table:
    """One data set: train/test frames with an integer `id`, numeric and categorical columns."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    exclude: list[str]


def adbench_table(name: str, folder: Path) -> Table:
    """An ADBench set with adbench.py's split (10,000-row cap, stratified 70/30, seed 1)."""
    import adbench

    x_train, x_test, _, _ = adbench.load_split(folder / f"{name}.npz", SEED)
    columns = feature_names(x_train.shape[1])
    train = pd.DataFrame(x_train, columns=columns)
    test = pd.DataFrame(x_test, columns=columns)
    train.insert(0, "id", np.arange(len(train)))
    test.insert(0, "id", np.arange(len(test)) + len(train))
    return Table(name, train, test, columns, [], [])


def nsl_kdd_table(folder: Path) -> Table:
    """All NSL-KDD rows (normal and attack), a random 70/30 split: mixed numeric/categorical."""
    import nsl_kdd

    frame = nsl_kdd.load(folder)
    order = np.random.default_rng(SEED).permutation(len(frame))
    cut = int(0.7 * len(frame))
    train, test = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
    categorical = list(nsl_kdd.CATEGORICAL)
    numeric = [c for c in frame.columns if c not in (*nsl_kdd.NOT_FEATURES, *categorical)]
    return Table("NSL-KDD", train, test, numeric, categorical, ["label", "difficulty"])


def reconstruction_error(table: Table, decoded: pd.DataFrame) -> tuple[float, float]:
    """(standardized RMSE over numeric columns, accuracy over categorical columns)."""
    rmse = []
    for column in table.numeric:
        std = table.train[column].astype(float).std()
        if not std > 0:
            continue  # a constant column: nothing to standardize by
        guess = pd.to_numeric(decoded[column], errors="coerce").astype(float)
        guess = guess.fillna(table.train[column].astype(float).mean()).to_numpy()
        truth = table.test[column].astype(float).to_numpy()
        rmse.append(np.sqrt(np.mean((guess - truth) ** 2)) / std)
    accuracy = [
        np.mean(decoded[c].astype(str).to_numpy() == table.test[c].astype(str).to_numpy())
        for c in table.categorical
    ]
    return float(np.mean(rmse)), float(np.mean(accuracy)) if accuracy else float("nan")


def quantize_int8(train_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Round-trip `codes` through int8 with vaepipe's per-dimension scale (from train codes)."""
    scale = np.maximum(np.abs(train_codes).max(axis=0), 1e-6) * INT8_HEADROOM / 127.0
    return np.clip(np.rint(codes / scale), -127, 127) * scale


def pca_decoded(table: Table, components: int) -> pd.DataFrame:
    """PCA with `components` int8 components: z-scored numbers, one-hot categories."""
    train, test = _pca_matrix(table, table.train), _pca_matrix(table, table.test)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    z_train, z_test = (train - mean) / std, (test - mean) / std
    components = min(components, z_train.shape[1])
    pca = PCA(n_components=components, random_state=SEED).fit(z_train)
    codes = quantize_int8(pca.transform(z_train), pca.transform(z_test))
    rebuilt = pca.inverse_transform(codes) * std + mean
    out = pd.DataFrame(rebuilt[:, : len(table.numeric)], columns=table.numeric)
    start = len(table.numeric)
    for column in table.categorical:
        values = sorted(table.train[column].astype(str).unique())
        block = rebuilt[:, start : start + len(values)]
        out[column] = np.asarray(values, dtype=object)[block.argmax(axis=1)]
        start += len(values)
    return out


def _pca_matrix(table: Table, frame: pd.DataFrame) -> np.ndarray:
    parts = [frame[table.numeric].to_numpy(dtype=np.float64)]
    for column in table.categorical:
        values = sorted(table.train[column].astype(str).unique())
        parts.append((frame[column].astype(str).to_numpy()[:, None] == np.array(values)) * 1.0)
    return np.concatenate(parts, axis=1)


def reference_sizes(table: Table, work: Path) -> dict[str, float]:
    """Bytes per record of the raw float32 record and of the gzip'd feature CSV."""
    features = table.test[table.numeric + table.categorical]
    csv = features.to_csv(index=False).encode()
    return {
        "raw float32 B/rec": 4.0 * features.shape[1],
        "gzip CSV B/rec": len(gzip.compress(csv, compresslevel=9)) / len(features),
    }


def run_vaepipe(
    table: Table, dim: int, work: Path, overrides: list[str], config: Path
) -> dict[str, float]:
    """train -> score -> decode at latent_dim `dim`; sizes and errors of the decoded test rows."""
    table.train.to_csv(work / "train.csv", index=False)
    table.test.to_csv(work / "test.csv", index=False)
    exclude = f"data.exclude_columns=[{', '.join(table.exclude)}]"
    sets = ["data.id_column=id", exclude, f"train.seed={SEED}", f"model.latent_dim={dim}"]
    seconds = vaepipe_train(work / "train.csv", work / "model", sets + overrides, config)
    vaepipe_score(work / "model", work / "test.csv", work / "scores")
    vaepipe_decode(work / "model", work / "scores" / "codes", work / "decoded")
    codes = pd.read_parquet(work / "scores" / "codes")
    code_bytes = np.asarray(codes.code.iloc[0]).nbytes
    on_disk = sum(p.stat().st_size for p in (work / "scores" / "codes").glob("*.parquet"))
    decoded = read_by_id(work / "decoded", table.test.id)
    rmse, accuracy = reconstruction_error(table, decoded)
    return {
        "code B/rec": code_bytes,
        "codes Parquet B/rec": on_disk / len(codes),
        "vaepipe std. RMSE": rmse,
        "vaepipe cat. acc.": accuracy,
        "train s": seconds,
    }


def run_table(table: Table, dims: list[int], overrides: list[str], config: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaepipe-compress-") as tmp:
        sizes = reference_sizes(table, Path(tmp))
        for dim in dims:
            log(f"{table.name} latent_dim={dim}")
            work = Path(tmp) / f"k{dim}"
            work.mkdir()
            measured = run_vaepipe(table, dim, work, overrides, config)
            pca_rmse, pca_accuracy = reconstruction_error(table, pca_decoded(table, dim))
            rows.append(
                {
                    "set": table.name,
                    "K": dim,
                    "features": len(table.numeric) + len(table.categorical),
                    **sizes,
                    **measured,
                    "PCA int8 std. RMSE": pca_rmse,
                    "PCA int8 cat. acc.": pca_accuracy,
                }
            )
    return rows


def plot(results: pd.DataFrame, path: Path) -> None:
    """Rate-distortion: standardized RMSE vs bytes per record, one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(results.set))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        part = results[results.set == name]
        ax.plot(part["code B/rec"], part["vaepipe std. RMSE"], "o-", label="vaepipe (int8 code)")
        ax.plot(part["code B/rec"], part["PCA int8 std. RMSE"], "s--", label="PCA (int8 code)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(part["code B/rec"], [str(int(k)) for k in part["code B/rec"]])
        ax.set_title(f"{name} (raw float32 {part['raw float32 B/rec'].iloc[0]:.0f} B, "
                     f"gzip CSV {part['gzip CSV B/rec'].iloc[0]:.0f} B)", fontsize=9)  # fmt: skip
        ax.set_xlabel("code bytes per record")
        ax.set_ylabel("standardized RMSE (numeric columns)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "adbench")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), help="ADBench stems")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DEFAULT_DIMS))
    parser.add_argument("--no-nsl-kdd", dest="nsl_kdd", action="store_false")
    parser.add_argument("--nsl-kdd-data", type=Path, default=SHARED_DATA / "nsl_kdd")
    parser.add_argument("--set", action="append", default=[], help="vaepipe config override")
    parser.add_argument(
        "--config", type=Path, default=TABULAR_CONFIG, help="vaepipe config (e.g. the preset "
        "configs/compression.yaml); default configs/tabular.yaml"
    )  # fmt: skip
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "compression.png")
    parser.add_argument("--results", type=Path, help="CSV of the raw rows")
    parser.add_argument("--quick", action="store_true", help="6_cardio, K=2 and 4, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.sets, args.dims, args.nsl_kdd = ["6_cardio"], [2, 4], False
        args.set = [f"train.epochs={QUICK_EPOCHS}", *args.set]
    return args


def main() -> None:
    args = parse_args()
    print(f"machine: {machine()}\nvaepipe config: {args.config}\n")
    tables = [adbench_table(name, args.data) for name in args.sets]
    if args.nsl_kdd and (args.nsl_kdd_data / "KDDTrain+_20Percent.txt").exists():
        tables.append(nsl_kdd_table(args.nsl_kdd_data))
    rows = []
    for table in tables:
        rows += run_table(table, args.dims, args.set, args.config)
        if args.results:
            pd.DataFrame(rows).to_csv(args.results, index=False)
    results = pd.DataFrame(rows)
    print(markdown(results, floatfmt=".3f"))
    wins = (results["vaepipe std. RMSE"] < results["PCA int8 std. RMSE"]).sum()
    print(f"\nvaepipe below PCA (same K, int8) on numeric std. RMSE: {wins} of {len(results)} rows")
    plot(results, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
