"""Wide tables: VAE training time and peak memory against the number of columns.

Synthetic tables of 10, 100, 1,000 and 1,555 binary (0/1) columns, each a categorical feature
of cardinality 3 as the pipeline encodes it (2 values + the out-of-vocabulary bucket), and of
10, 100, 1,000 and 10,000 numeric columns, are trained through `vae_model.fit_vae` (the
function `vaepipe train` calls) with the default architecture and training settings of
`configs/tabular.yaml` (hidden units (128, 64), the latent size `model.latent_dim: auto` gives the
columns (8 up to 143, 32 from 512), KL warm-up 5 epochs, Adam 1e-3, 40 epochs at most, early
stopping patience 5, batch 256). Each size runs in its own
subprocess, which reports the seconds spent in `fit_vae` (tracing and compilation included,
as a user pays them), the epochs run, its wall time from start (imports included) and its
peak RSS (`resource.getrusage(...).ru_maxrss`).

The rows carry a low-rank structure (4 latent factors), so training has something to learn
and early stopping behaves as on real data. Missing values: 5% of the entries.

    python benchmarks/wide_tables.py [--rows 1400] [--binary 10 100 1000 1555]
        [--numeric 10 100 1000 10000] [--timeout 600] [--quick]

To measure another copy of `vae_model` (e.g. an older commit unpacked with `git archive`),
put it first on PYTHONPATH; the table says which `vae_model` each child imported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LATENT_FACTORS = 4
MISSING_RATE = 0.05
VALIDATION_FRACTION = 0.1  # of the training rows, as extra rows (configs/tabular.yaml)


def synthetic(kind: str, columns: int, rows: int, seed: int):
    """Packed ``[rows, 2*columns]`` records and their layout (``kind`` binary or numeric)."""
    import numpy as np

    from vae_model import FeatureLayout, pack

    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(rows, LATENT_FACTORS))
    loadings = rng.normal(size=(LATENT_FACTORS, columns)) / np.sqrt(LATENT_FACTORS)
    signal = factors @ loadings
    names = [f"c{j}" for j in range(columns)]
    if kind == "binary":
        values = (rng.random((rows, columns)) < 1.0 / (1.0 + np.exp(-2.0 * signal))).astype(
            np.float32
        )
        layout = FeatureLayout(categorical=tuple((name, 3) for name in names))
    else:
        values = (signal + 0.5 * rng.normal(size=signal.shape)).astype(np.float32)
        values = (values - values.mean(0)) / values.std(0)
        layout = FeatureLayout(numeric=tuple(names))
    mask = rng.random(values.shape) >= MISSING_RATE
    return pack(np.where(mask, values, 0.0), mask), layout


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args: argparse.Namespace) -> None:
    """Trains one table and writes its measurements as JSON to ``args.status``."""
    started = time.perf_counter()
    status = Path(args.status)
    result = {"kind": args.kind, "columns": args.columns, "done": False}

    def write() -> None:
        result["peak_rss_mib"] = _peak_rss_mib()
        result["wall_s"] = time.perf_counter() - started
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(status)

    def heartbeat() -> None:  # keeps the peak RSS readable if the parent has to kill us
        while True:
            write()
            time.sleep(2.0)

    threading.Thread(target=heartbeat, daemon=True).start()

    import keras

    import vae_model
    from configs.schema import ModelConfig
    from vae_model import VAE, fit_vae

    result["vae_model"] = str(Path(vae_model.__file__).parent)
    result["backend"] = keras.backend.backend()
    n_val = max(1, round(args.rows * VALIDATION_FRACTION))
    x_train, layout = synthetic(args.kind, args.columns, args.rows, seed=1)
    x_val, _ = synthetic(args.kind, args.columns, n_val, seed=2)
    keras.utils.set_random_seed(0)
    model = VAE(
        layout.to_config(),
        latent_dim=ModelConfig().latent_size(args.columns),
        hidden_units=(128, 64),
        kl_warmup_epochs=5,
        score_tolerance=0.5,
        seed=0,
    )
    fit_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as checkpoints:
        history = fit_vae(
            model,
            x_train,
            x_val,
            epochs=args.epochs,
            learning_rate=1e-3,
            patience=5,
            checkpoint_dir=checkpoints,
            batch_size=args.batch_size,
            print_fn=None,
        )
    result["fit_s"] = time.perf_counter() - fit_started
    result["epochs"] = len(history.epoch)
    result["val_loss"] = float(min(history.history["val_loss"]))
    result["done"] = True
    write()


def run_one(kind: str, columns: int, args: argparse.Namespace) -> dict:
    """Runs `child` in a subprocess; on timeout the row says so, with the peak RSS seen."""
    with tempfile.TemporaryDirectory() as tmp:
        status = Path(tmp) / "status.json"
        command = [
            sys.executable,
            __file__,
            "--child",
            "--kind",
            kind,
            "--columns",
            str(columns),
            "--rows",
            str(args.rows),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--status",
            str(status),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        elapsed = time.perf_counter() - started
        result = json.loads(status.read_text()) if status.exists() else {}
        result.update(kind=kind, columns=columns, elapsed_s=elapsed, returncode=proc.returncode)
        if proc.returncode not in (0, -9) and not result.get("done"):
            result["error"] = stderr.decode(errors="replace")[-2000:]
        return result


def markdown(results: list[dict], timeout: float) -> str:
    lines = [
        "| columns | kind | features (one-hot width) | fit_vae s | epochs | process wall s "
        "| peak RSS MiB |",
        "|--:|:--|:--|--:|--:|--:|--:|",
    ]
    for r in results:
        width = f"{r['columns']:,} categorical ({3 * r['columns']:,})"
        if r["kind"] == "numeric":
            width = f"{r['columns']:,} numeric"
        if r.get("done"):
            fit, epochs, wall = f"{r['fit_s']:.1f}", str(r["epochs"]), f"{r['wall_s']:.1f}"
        elif "error" in r:
            fit, epochs, wall = "failed", "", ""
        else:
            fit, epochs, wall = f"> {timeout / 60:.0f} min (stopped)", "", f"> {timeout:.0f}"
        peak = f"{r['peak_rss_mib']:,.0f}" if "peak_rss_mib" in r else "?"
        if not r.get("done") and "peak_rss_mib" in r:
            peak = f">= {peak}"
        lines.append(
            f"| {r['columns']:,} | {r['kind']} | {width} | {fit} | {epochs} | {wall} " f"| {peak} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1400, help="training rows")
    parser.add_argument("--binary", type=int, nargs="*", default=[10, 100, 1000, 1555])
    parser.add_argument("--numeric", type=int, nargs="*", default=[10, 100, 1000, 10000])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per size")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--json", help="also write the raw results here")
    # Internal: one size in this process.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--columns", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--status", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.rows, args.binary, args.numeric, args.epochs = 200, [10, 100], [10, 100], 3
    sizes = [("binary", n) for n in args.binary] + [("numeric", n) for n in args.numeric]
    results = []
    for kind, columns in sizes:
        result = run_one(kind, columns, args)
        results.append(result)
        print(f"{kind} {columns}: {json.dumps(result)}", file=sys.stderr, flush=True)
    first = next((r for r in results if "vae_model" in r), {})
    print(
        f"\n{args.rows:,} training rows (+{round(args.rows * VALIDATION_FRACTION)} validation), "
        f"batch {args.batch_size}, at most {args.epochs} epochs; backend "
        f"{first.get('backend', '?')}; vae_model from {first.get('vae_model', '?')}; "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}\n"
    )
    print(markdown(results, args.timeout))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
