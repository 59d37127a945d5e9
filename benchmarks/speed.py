"""Speed and memory on this machine: `vaepipe score` (CSV -> Parquet, DirectRunner) against the
bare `model.predict` ceiling, training rows/s against PyOD's VAE, peak RSS of scoring at 100k
and 1M rows, and what TFDV validation costs (`schema.validation_sample_rate` 0.1 vs 1.0).

Data: `pipeline.demo_data.synthetic_table` (mixed numeric/categorical with missing values);
the 1M-row file repeats the 100k rows with fresh ids. The model is trained once through the CLI.
Every ratio below is measured in the same run, on the same files and model.

    python benchmarks/speed.py [--rows 100000 1000000] [--train-rows 20000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from common import CLI, ROOT, log, machine, markdown, set_args

TRAIN_SETS = ["data.id_column=id", "data.exclude_columns=[label]", "train.seed=1"]
TRAIN_EPOCHS = 10
REPEAT_BLOCK = 100_000


@dataclass
class Run:
    """One CLI run: wall seconds and peak RSS (MiB) of the whole process tree."""

    seconds: float
    peak_mib: float


def synthetic_csv(path: Path, rows: int, seed: int) -> None:
    """`rows` synthetic records; above 100k, 100k-row blocks repeated with fresh ids."""
    from pipeline.cli.demo_data import synthetic_table

    block = synthetic_table(min(rows, REPEAT_BLOCK), anomaly_rate=0.01, seed=seed)
    with open(path, "w") as handle:
        for start in range(0, rows, len(block)):
            part = block.iloc[: min(len(block), rows - start)].copy()
            part["id"] = [f"s{seed}-{start + i:08d}" for i in range(len(part))]
            part.to_csv(handle, index=False, header=start == 0)


def run_measured(args: list[str], interval: float = 0.1) -> Run:
    """Run `vaepipe ARGS`, sampling the RSS of the process and its children every `interval`."""
    started = time.perf_counter()
    proc = psutil.Popen([*CLI, *args], cwd=ROOT, stdout=-1, stderr=-1, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"vaepipe {' '.join(args)} failed:\n{err[-4000:]}")
    return Run(seconds, peak[0] / 2**20)


def _tree_rss(proc: psutil.Process) -> int:
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in family:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def score(model: Path, csv: Path, out: Path, overrides: list[str] = ()) -> Run:
    args = ["score", "--model", str(model), "--input", str(csv), "--output", str(out)]
    return run_measured(args + set_args(overrides))


def encoded_inputs(model_dir: Path, csv: Path) -> tuple[object, np.ndarray, int]:
    """The bundle's model and the CSV rows encoded in memory (the product's typing and encoding,
    outside Beam); also the scoring batch size of the bundle's config."""
    import yaml

    from pipeline.artifacts.bundle import load_bundle
    from pipeline.core.records import RecordChunk
    from pipeline.features.column_types import apply_kinds

    bundle = load_bundle(str(model_dir))
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame = frame.where(frame != "", None)
    chunk = RecordChunk(str(csv), list(frame["id"]), [""] * len(frame), frame.drop(columns="id"))
    typed, dead = apply_kinds(chunk, bundle.encoding.kinds, ("label",))
    assert not dead, f"{len(dead)} rows dead-lettered while encoding"
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    return bundle.model, bundle.encoding.encode(typed.frame), config["scoring"]["batch_size"]


def predict_seconds(model, inputs: np.ndarray, batch_size: int, repeats: int = 3) -> float:
    """Best of `repeats` timed `model.predict` calls, after one untimed warm-up call."""
    model.predict(inputs[: batch_size * 2], batch_size=batch_size, verbose=0)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(inputs, batch_size=batch_size, verbose=0)
        best = min(best, time.perf_counter() - started)
    return best


class _EpochClock:
    """Epoch end times, for steady-state throughput (the first epoch includes compilation)."""

    def __init__(self) -> None:
        self.times = [time.perf_counter()]

    def tick(self) -> None:
        self.times.append(time.perf_counter())

    def steady_rows_per_s(self, rows: int) -> float:
        spans = np.diff(self.times)[1:] if len(self.times) > 2 else np.diff(self.times)
        return rows / float(np.median(spans))


def keras_training(model_dir: Path, inputs: np.ndarray, epochs: int, batch: int = 256) -> float:
    """Steady-state rows/s of vaepipe's Keras fit loop (fit_vae: the product's loop, with its
    10% validation) on the encoded rows in memory, same architecture as the bundle's model."""
    import keras

    from vae_model import VAE, fit_vae

    config = dict(keras.saving.load_model(model_dir / "model.keras", compile=False).get_config())
    model = VAE(**{k: config[k] for k in ("layout", "latent_dim", "hidden_units", "seed")})
    clock = _EpochClock()
    tick = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: clock.tick())
    cut = int(0.9 * len(inputs))
    with tempfile.TemporaryDirectory() as tmp:
        clock.times = [time.perf_counter()]
        fit_vae(model, inputs[:cut], inputs[cut:], epochs, 1e-3, epochs, tmp, [tick],
                batch_size=batch, print_fn=None)  # fmt: skip
    return clock.steady_rows_per_s(cut)


def pyod_training(
    features: np.ndarray, epochs: int, batch: int, hidden: list[int], latent: int, threads: int
) -> float:
    """Steady-state rows/s of PyOD's VAE with vaepipe's architecture (no dropout, same widths,
    latent size, batch size and epochs), with `threads` torch intra-op threads."""
    import torch
    from pyod.models.vae import VAE

    torch.set_num_threads(threads)
    clock = _EpochClock()

    class TimedVAE(VAE):
        def epoch_update(self):
            clock.tick()
            return super().epoch_update()

    model = TimedVAE(epoch_num=epochs, batch_size=batch, encoder_neuron_list=hidden,
                     decoder_neuron_list=hidden[::-1], latent_dim=latent, dropout_rate=0.0,
                     verbose=0, random_state=1)  # fmt: skip
    cut = int(0.9 * len(features))
    model.build_model = _wrap_start(model.build_model, clock)
    model.fit(features[:cut])
    return clock.steady_rows_per_s(cut)


def _wrap_start(build, clock: _EpochClock):
    def wrapped():
        build()
        clock.times = [time.perf_counter()]

    return wrapped


def peer_features(csv: Path, rows: int) -> np.ndarray:
    """One-hot categories and z-scored numbers (NaN -> 0) of the first `rows` training rows."""
    frame = pd.read_csv(csv, nrows=rows).drop(columns=["id", "label"])
    frame = pd.get_dummies(frame, columns=["region", "tier", "is_weekend"], dtype=float)
    values = frame.to_numpy(dtype=np.float64)
    values = (values - np.nanmean(values, axis=0)) / (np.nanstd(values, axis=0) + 1e-9)
    return np.nan_to_num(values).astype(np.float32)


def training_report(model_dir: Path) -> dict:
    return json.loads((model_dir / "training_report.json").read_text())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=TRAIN_EPOCHS)
    parser.add_argument("--work", type=Path, help="keep files here (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="5k/20k rows, 2k train rows")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.train_rows, args.epochs = [5_000, 20_000], 2_000, 3
    return args


def main() -> None:
    args = parse_args()
    print(f"machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="vaepipe-speed-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print_report(measure(args, work))


@dataclass
class Measured:
    """Everything one run of this script measures."""

    base: int  # the row count the ratios are taken at (the smallest of --rows)
    epochs: int
    scoring: dict[int, Run]  # rows -> `vaepipe score` run, validation_sample_rate=1.0
    sampled: Run  # `vaepipe score` of `base` rows with validation_sample_rate=0.1
    predict_s: float  # bare model.predict of `base` encoded rows
    train: Run  # `vaepipe train`
    train_rows: int
    epochs_run: int
    keras_rps: float
    pyod_rps: dict[int, float]  # torch threads -> rows/s


def measure(args: argparse.Namespace, work: Path) -> Measured:
    base = min(args.rows)
    log("writing synthetic CSVs")
    synthetic_csv(work / "train.csv", args.train_rows, seed=1)
    for rows in [1_000, *args.rows]:
        synthetic_csv(work / f"score_{rows}.csv", rows, seed=2)
    model = work / "model"
    log("vaepipe train")
    sets = TRAIN_SETS + [f"train.epochs={args.epochs}", "train.early_stopping_patience=1000"]
    train_args = ["train", "--input", str(work / "train.csv"), "--output", str(model)]
    train_run = run_measured(train_args + set_args(sets))
    report = training_report(model)

    runs = {}
    for rows in [1_000, *args.rows]:
        log(f"vaepipe score {rows} rows")
        runs[rows] = score(model, work / f"score_{rows}.csv", work / f"out_{rows}")
    log(f"vaepipe score {base} rows, validation_sample_rate=0.1")
    sampled_rate = ["schema.validation_sample_rate=0.1"]
    sampled = score(model, work / f"score_{base}.csv", work / "out_sampled", sampled_rate)

    log("bare model.predict")
    keras_model, inputs, batch = encoded_inputs(model, work / f"score_{base}.csv")
    predict_s = predict_seconds(keras_model, inputs, batch)
    log("training loops: Keras (vaepipe) and PyOD")
    keras_rps = keras_training(model, encoded_inputs(model, work / "train.csv")[1], args.epochs)
    features = peer_features(work / "train.csv", args.train_rows)
    config = keras_model.get_config()
    shape = (list(config["hidden_units"]), config["latent_dim"])
    pyod_rps = {t: pyod_training(features, args.epochs, 256, *shape, threads=t) for t in (1, 2)}
    return Measured(base, args.epochs, runs, sampled, predict_s, train_run,
                    report["rows"]["train"], len(report["history"]["loss"]), keras_rps,
                    pyod_rps)  # fmt: skip


def scoring_table(m: Measured) -> pd.DataFrame:
    """Per row count: wall time, rows/s (wall, and marginal over the 1k-row run, which removes
    the fixed start-up cost), each as a fraction of the bare predict ceiling, and peak RSS."""
    small, ceiling = m.scoring[1_000], m.base / m.predict_s
    rows = []
    for n, run in m.scoring.items():
        marginal = (n - 1_000) / (run.seconds - small.seconds) if n > 1_000 else float("nan")
        rows.append(
            {
                "rows": f"{n:,}",
                "wall s": run.seconds,
                "rows/s (wall)": n / run.seconds,
                "/ predict": n / run.seconds / ceiling,
                "rows/s (marginal over 1k)": marginal,
                "/ predict (marginal)": marginal / ceiling,
                "peak RSS MiB (process tree)": run.peak_mib,
            }
        )
    return pd.DataFrame(rows)


def training_table(m: Measured) -> pd.DataFrame:
    """Training rows/s: the CLI end to end, the Keras fit loop, PyOD's VAE."""
    cli = m.train_rows * m.epochs_run / m.train.seconds
    rows = [
        {"what": f"`vaepipe train` end to end ({m.train_rows} rows x {m.epochs_run} epochs / "
                 "wall: Beam prepare, calibration, start-up included)", "rows/s": cli},
        {"what": "vaepipe's Keras fit loop (fit_vae, in memory)", "rows/s": m.keras_rps},
    ]  # fmt: skip
    for threads, rps in m.pyod_rps.items():
        what = f"PyOD VAE, same widths, latent, batch; no dropout; {threads} torch thread(s)"
        rows.append({"what": what, "rows/s": rps})
    return pd.DataFrame(rows)


def print_report(m: Measured) -> None:
    scoring = scoring_table(m)
    print("`vaepipe score` (DirectRunner, validation_sample_rate=1.0):\n")
    print(scoring.to_markdown(index=False, floatfmt=("", ".1f", ".0f", ".3f", ".0f", ".3f", ".0f")))
    ceiling = m.base / m.predict_s
    print(
        f"\nbare model.predict, {m.base:,} encoded rows in memory: {ceiling:,.0f} rows/s "
        "(the ceiling; target: `vaepipe score` at >= 0.5 of it)"
    )
    big, base_run = max(m.scoring), m.scoring[m.base]
    print(
        f"peak RSS at {big} vs {m.base} rows: {m.scoring[big].peak_mib / base_run.peak_mib:.2f}x "
        f"(flat = 1.00); {m.scoring[1_000].peak_mib:.0f} MiB at 1k rows"
    )
    print(
        f"\nvalidation_sample_rate 0.1 vs 1.0 at {m.base} rows: {m.sampled.seconds:.1f} s vs "
        f"{base_run.seconds:.1f} s (ratio {m.sampled.seconds / base_run.seconds:.3f}); peak RSS "
        f"{m.sampled.peak_mib:.0f} vs {base_run.peak_mib:.0f} MiB"
    )
    print(f"\ntraining throughput, batch 256, {m.epochs} epochs (steady epochs: median, not #1):\n")
    print(markdown(training_table(m), floatfmt=".0f"))
    print(
        f"\nratio vaepipe fit loop / best PyOD: {m.keras_rps / max(m.pyod_rps.values()):.2f}; "
        f"`vaepipe train` wall {m.train.seconds:.1f} s, peak RSS {m.train.peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
