"""Archive benchmark: bytes per record of `vaepipe compress` against gzip -9, xz -9e, zstd -19
and Parquet+zstd of the same rows, at relative tolerances 0 (lossless), 1e-3, 1e-2 and 1e-1.

Per data set: `vaepipe train` (the archive preset below) on a 70% split; `compress` the other
30% at each tolerance (`--set compress.relative_tolerance=R`), without a dictionary
(`compress.dictionary=null`) and with the default one (the training rows the bundle keeps, its
`archive_dictionary.parquet` part counted with the model), `decompress` it, and
check every restored value against the CSV's text (numbers within R * |x|, bit-exact at 0;
categories and missing values exact). Sizes: the archive on disk (blocks/*.vzb +
archive.json) per record; the model separately (model.keras as the bundle holds it, and the
float32 decoder weights that decompressing needs), amortized over 10k, 100k and 1M records.
Speeds: CSV megabytes per second of the compress and decompress jobs (DirectRunner, one
process, job start included).

    python benchmarks/archive.py [--sets 6_cardio 30_satellite 28_pendigits] [--no-nsl-kdd]
        [--tolerances 0 1e-3 1e-2 1e-1] [--plot docs/archive_rd.png] [--json out.json]
    python benchmarks/archive.py --from-json out.json   # tables and plot again, no runs
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from common import ROOT, SHARED_DATA, feature_names, log, machine, markdown, run_vaepipe, set_args

sys.path.insert(0, str(ROOT))

from pipeline.artifacts.bundle import DICTIONARY_FILE  # noqa: E402

# The archive preset: the true ELBO (beta 1: the KL is the code's rate), a variance decoded per
# record (a record the decoder is sure of costs little), asinh over the IQR scale (heavy-tailed
# byte counts become near log-normal, which a relative grid codes well), more epochs.
PRESET = (
    "model.beta=1.0",
    "model.numeric_variance=record",
    "data.numeric_scaling=iqr",
    "train.epochs=100",
    "model.latent_dim=8",
)
DEFAULT_SETS = ("6_cardio", "30_satellite", "28_pendigits")
TOLERANCES = (0.0, 1e-3, 1e-2, 1e-1)
AMORTIZE = (10_000, 100_000, 1_000_000)
SEED = 1


def nsl_kdd_split(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """KDDTrain+_20Percent as text, every column (label and difficulty too), 70/30 by a seeded
    permutation, each part in file order."""
    names = [n.strip() for n in (folder / "columns.txt").read_text().splitlines() if n.strip()]
    frame = pd.read_csv(folder / "KDDTrain+_20Percent.txt", header=None, names=names, dtype=str)
    order = np.random.default_rng(SEED).permutation(len(frame))
    cut = int(0.7 * len(frame))
    return frame.iloc[np.sort(order[:cut])], frame.iloc[np.sort(order[cut:])]


def adbench_split(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    sys.path.insert(0, str(Path(__file__).parent))
    import adbench

    x_train, x_test, _, _ = adbench.load_split(SHARED_DATA / "adbench" / f"{name}.npz", SEED)
    columns = feature_names(x_train.shape[1])
    return pd.DataFrame(x_train, columns=columns), pd.DataFrame(x_test, columns=columns)


# ------------------------------------------------------------------ baselines
def baselines(csv: Path) -> dict[str, int]:
    data = csv.read_bytes()
    sizes = {
        "gzip -9": len(gzip.compress(data, 9)),
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
        "zstd -19": len(
            subprocess.run(["zstd", "-19", "-c", str(csv)], capture_output=True, check=True).stdout
        ),  # fmt: skip
    }
    table = pa.Table.from_pandas(pd.read_csv(csv), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", compression_level=19)
    sizes["Parquet+zstd"] = len(buffer.getvalue())
    return sizes


# ------------------------------------------------------------------ the archive
def archive_run(
    model: Path, csv: Path, work: Path, tolerance: float, dictionary: bool = False
) -> dict:
    """compress + decompress through the CLI handlers (what `vaepipe compress` runs); with
    `dictionary`, under the default `compress.dictionary` (the bundle's training rows),
    without it under none."""
    from pipeline.cli.archive_commands import cmd_compress, cmd_decompress

    tag = f"{tolerance:g}" + ("-dict" if dictionary else "")
    archive, table = work / f"archive-{tag}", work / f"table-{tag}"
    overrides = [f"compress.relative_tolerance={tolerance}", "data.chunk_rows=65536"]
    if not dictionary:
        overrides.append("compress.dictionary=null")
    started = time.perf_counter()
    compress_args = argparse.Namespace(
        model=str(model), input=str(csv), output=str(archive), config=[], set=overrides
    )
    cmd_compress(compress_args, [])
    compress_s = time.perf_counter() - started
    started = time.perf_counter()
    cmd_decompress(argparse.Namespace(model=str(model), input=str(archive), output=str(table)), [])
    decompress_s = time.perf_counter() - started
    summary = json.loads((archive / "summary.json").read_text())
    on_disk = sum(p.stat().st_size for p in (archive / "blocks").glob("*.vzb"))
    on_disk += (archive / "archive.json").stat().st_size
    restored = pd.concat(
        [pd.read_parquet(p) for p in sorted(table.glob("part-*.parquet"))], ignore_index=True
    )
    coder_s = coder_seconds(model, csv, overrides)
    return {
        "coder_compress_s": coder_s[0],
        "coder_decompress_s": coder_s[1],
        "rows": summary["rows_compressed"],
        "dead": summary["rows_dead_lettered"],
        "bytes": on_disk,
        "bits": summary["bits_per_record"],
        "compress_s": compress_s,
        "decompress_s": decompress_s,
        "worst": worst_error(
            pd.read_csv(csv, dtype=str, keep_default_na=False), restored, tolerance
        ),
    }


def coder_seconds(model: Path, csv: Path, overrides: list[str]) -> tuple[float, float]:
    """In-process coding time (the Python API's path: no Beam job around it)."""
    from pipeline.archive.api import compress_frame, decompress_archive
    from pipeline.artifacts.bundle import load_bundle
    from pipeline.jobs.settings import model_config

    bundle, config = load_bundle(str(model)), model_config(str(model), (), overrides)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    started = time.perf_counter()
    archive = compress_frame(bundle, frame, config)
    middle = time.perf_counter()
    decompress_archive(bundle, archive, config)
    return middle - started, time.perf_counter() - middle


def worst_error(original: pd.DataFrame, restored: pd.DataFrame, tolerance: float) -> float:
    """The largest |x' - x| / |x| over numeric values (0 at exact); raises if any value breaks
    the bound, a category differs or a missing value moved."""
    assert len(original) == len(restored), (len(original), len(restored))
    worst = 0.0
    for name in original.columns:
        text, out = original[name], restored[name]
        numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        if numbers.notna().sum() == text.ne("").sum() and out.dtype.kind in "fiu":
            x = np.array([float(v) if v else np.nan for v in text])
            y = out.to_numpy(dtype=np.float64)
            assert np.array_equal(np.isnan(x), np.isnan(y)), name
            seen = ~np.isnan(x)
            if tolerance == 0:
                assert np.array_equal(x[seen].view(np.int64), y[seen].view(np.int64)), name
            error = np.abs(y[seen] - x[seen])
            assert np.all(error <= tolerance * np.abs(x[seen])), name
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = np.where(x[seen] != 0, error / np.abs(x[seen]), 0.0)
            worst = max(worst, float(relative.max(initial=0.0)))
        else:
            assert out.fillna("").astype(str).tolist() == text.tolist(), name
    return worst


def model_sizes(model: Path) -> dict[str, int]:
    """The bundle's model.keras (with the optimizer state Keras saves), xz'd; and the float32
    weights of the decoder, which is all decompressing runs."""
    from pipeline.artifacts.bundle import load_bundle

    keras_file = (model / "model.keras").read_bytes()
    vae = load_bundle(str(model)).model
    layers = [*vae.decoder_hidden, vae.numeric_mu_head, vae.numeric_log_var_head,
              vae.categorical_head]  # fmt: skip
    weights = sum(w.size for layer in layers if layer is not None for w in layer.get_weights())
    if vae.numeric_log_var is not None:
        weights += int(np.prod(vae.numeric_log_var.shape))
    encoding = (model / "encoding.json").read_bytes()
    return {
        "model.keras xz": len(lzma.compress(keras_file, preset=9)) + len(lzma.compress(encoding)),
        "decoder float32": 4 * int(weights) + len(lzma.compress(encoding)),
    }


# ------------------------------------------------------------------ one data set
def bench(name: str, train: pd.DataFrame, test: pd.DataFrame, tolerances, work: Path) -> dict:
    train_csv, test_csv = work / "train.csv", work / "test.csv"
    train.to_csv(train_csv, index=False)
    test.to_csv(test_csv, index=False)
    log(f"{name}: training on {len(train)} rows")
    train_s = run_vaepipe(["train", "--input", str(train_csv), "--output", str(work / "model")]
                          + set_args(PRESET))  # fmt: skip
    result = {"set": name, "rows": len(test), "columns": test.shape[1], "csv_bytes":
              test_csv.stat().st_size, "train_s": train_s, "baselines": baselines(test_csv),
              "model": model_sizes(work / "model"), "archive": {}}  # fmt: skip
    part = work / "model" / DICTIONARY_FILE
    result["dictionary_bytes"] = part.stat().st_size if part.exists() else 0
    result["archive_dictionary"] = {}
    for tolerance in tolerances:
        log(f"{name}: compress / decompress at relative tolerance {tolerance:g}")
        result["archive"][tolerance] = archive_run(work / "model", test_csv, work, tolerance)
        log(f"{name}: the same with the bundle's training rows as the dictionary")
        result["archive_dictionary"][tolerance] = archive_run(
            work / "model", test_csv, work, tolerance, dictionary=True
        )
    return result


def label(tolerance: float) -> str:
    return "lossless" if tolerance == 0 else f"{100 * tolerance:g}%"


def tables(results: list[dict]) -> str:
    rows, amortized = [], []
    for r in results:
        n = r["rows"]
        base = {k: v / n for k, v in r["baselines"].items()}
        runs = [(t, a, False) for t, a in r["archive"].items()]
        runs += [(t, a, True) for t, a in r.get("archive_dictionary", {}).items()]
        for tolerance, a, primed in runs:
            per = a["bytes"] / n
            rows.append({
                "set": r["set"], "rows": n, "rel. tol.": label(tolerance),
                "dictionary": "train rows" if primed else "-", "archive B/rec": per,
                "payload B/rec": a["bits"]["total"] / 8,
                "code": a["bits"]["code"] / 8, "categories": a["bits"]["categories"] / 8,
                "numbers": a["bits"]["numbers"] / 8, "masks": a["bits"]["masks"] / 8,
                "header+side": (a["bits"]["header"] + a["bits"]["side"]) / 8,
                **{f"{k} B/rec": v for k, v in base.items()},
                "archive / xz": per / base["xz -9e"],
                "worst rel. err.": a["worst"],
                "compress MB/s": r["csv_bytes"] / a["compress_s"] / 1e6,
                "decompress MB/s": r["csv_bytes"] / a["decompress_s"] / 1e6,
                "coder MB/s (c/d)": f"{r['csv_bytes'] / a['coder_compress_s'] / 1e6:.2f} / "
                f"{r['csv_bytes'] / a['coder_decompress_s'] / 1e6:.2f}",
            })  # fmt: skip
            models = dict(r["model"])
            if primed:  # what decompress then needs besides the archive: decoder + dictionary
                models = {f"{k} + dictionary (bundle part)": v + r["dictionary_bytes"]
                          for k, v in models.items()}  # fmt: skip
            for model_label, size in models.items():
                line = {"set": r["set"], "rel. tol.": label(tolerance), "model": model_label,
                        "model KB": size / 1e3, "xz -9e B/rec": base["xz -9e"]}  # fmt: skip
                for count in AMORTIZE:
                    line[f"archive+model B/rec @{count:,}"] = per + size / count
                amortized.append(line)
    return (
        markdown(pd.DataFrame(rows), floatfmt=".3f")
        + "\n\nModel included (its size spread over N records like these):\n\n"
        + markdown(pd.DataFrame(amortized), floatfmt=".2f")
    )


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        n = r["rows"]
        tolerances = list(r["archive"])
        xs = [max(t, 1e-4) for t in tolerances]  # lossless drawn at 1e-4 on the log axis
        sizes = [r["archive"][t]["bytes"] / n for t in tolerances]
        line = left.plot(xs, sizes, "o-", label=f"{r['set']} archive")[0]
        left.axhline(r["baselines"]["xz -9e"] / n, color=line.get_color(), ls="--", lw=0.8)
        right.plot(xs, [s / (r["baselines"]["xz -9e"] / n) for s in sizes], "o-", label=r["set"])
        primed = r.get("archive_dictionary", {})
        if primed:
            with_dictionary = [primed[t]["bytes"] / n for t in tolerances]
            left.plot(xs, with_dictionary, "s:", color=line.get_color(),
                      label=f"{r['set']} + dictionary")  # fmt: skip
            right.plot(xs, [s / (r["baselines"]["xz -9e"] / n) for s in with_dictionary], "s:",
                       color=line.get_color(), label=f"{r['set']} + dictionary")  # fmt: skip
    left.set(xscale="log", xlabel="relative tolerance (1e-4 = lossless)", ylabel="bytes / record",
             title="archive (solid) vs xz -9e (dashed)")  # fmt: skip
    right.axhline(1.0, color="k", lw=0.8)
    right.axhline(0.5, color="k", lw=0.8, ls=":")
    right.set(xscale="log", xlabel="relative tolerance (1e-4 = lossless)",
              ylabel="archive / xz -9e", title="relative to xz (target at 1%: <= 0.5)")  # fmt: skip
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(DEFAULT_SETS))
    parser.add_argument("--no-nsl-kdd", action="store_true")
    parser.add_argument("--tolerances", nargs="*", type=float, default=list(TOLERANCES))
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "archive_rd.png")
    parser.add_argument("--json", type=Path, help="save the results here as they come")
    parser.add_argument("--from-json", type=Path, help="print tables and plot of saved results")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        for r in results:
            r["archive"] = {float(t): a for t, a in r["archive"].items()}
            primed = r.get("archive_dictionary", {})
            r["archive_dictionary"] = {float(t): a for t, a in primed.items()}
        print(tables(results))
        if args.plot:
            plot(results, args.plot)
        return
    log(machine())
    results = []
    jobs = [] if args.no_nsl_kdd else [("NSL-KDD", lambda: nsl_kdd_split(SHARED_DATA / "nsl_kdd"))]
    jobs += [(name, lambda name=name: adbench_split(name)) for name in args.sets]
    for name, load in jobs:
        train, test = load()
        with tempfile.TemporaryDirectory(prefix="vaepipe-archive-") as tmp:
            results.append(bench(name, train, test, args.tolerances, Path(tmp)))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
    print(machine())
    print(tables(results))
    if args.plot:
        plot(results, args.plot)
        log(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
