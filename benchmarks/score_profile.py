"""Scoring speed against the network it runs (issue 14): one run, two tables, every ratio in it.

For the synthetic demo table (`pipeline.cli.demo_data`) and for NSL-KDD-shaped rows (the rows of
`KDDTrain+_20Percent.txt` repeated with fresh ids), each with a model trained once through the
CLI, it measures on this machine:

(a) a bare Keras forward pass: an encoder + decoder MLP of the bundle's widths (the encoder's
    input width, the hidden widths, 2 x latent heads; the decoder's heads as wide as the
    bundle's likelihood heads), `predict_on_batch` over the same encoded rows;
(b) the bundle model's scoring step on those rows in memory: the product's
    `pipeline.scoring.core.score_batches` (what the job runs), and Keras' own
    `model.predict_on_batch` loop (what `score_batches` ran before issue 14), each at several
    batch sizes; then the outputs step (`scoring.outputs.to_outputs`: p-values, per-feature
    contributions, top features, the Arrow tables) on the same rows;
(c) `vaepipe score` CSV -> Parquet (a subprocess, DirectRunner, defaults) at 1k and at the large
    row count: wall, marginal rows/s beyond the 1k-row run, peak RSS of the process tree;
and a per-stage breakdown of the large job (py-spy, 50 Hz, when installed; else none).

    python benchmarks/score_profile.py [--rows 1000000] [--work DIR] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from common import CLI, ROOT, SHARED_DATA, log, machine, markdown, set_args
from speed import Run, run_measured

NSL_KDD = SHARED_DATA / "nsl_kdd"
BATCHES = (1024, 2048, 4096, 8192)
OLD_BATCH = 1024  # scoring.batch_size before issue 14
SCORE_ROUNDS = 5


# ------------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class DataSet:
    name: str
    train_sets: tuple[str, ...]  # --set overrides for `vaepipe train`
    exclude: tuple[str, ...]


SYNTHETIC = DataSet("synthetic", ("data.id_column=id", "data.exclude_columns=[label]"), ("label",))
NSL = DataSet(
    "nsl_kdd",
    ("data.id_column=id", "data.exclude_columns=[label, difficulty]"),
    ("label", "difficulty"),
)


def block(data: DataSet, rows: int) -> pd.DataFrame:
    """The data set's base block of rows (the block the large file repeats)."""
    if data is SYNTHETIC:
        from pipeline.cli.demo_data import synthetic_table

        return synthetic_table(min(rows, 100_000), anomaly_rate=0.01, seed=2)
    names = [n.strip() for n in (NSL_KDD / "columns.txt").read_text().splitlines() if n.strip()]
    frame = pd.read_csv(NSL_KDD / "KDDTrain+_20Percent.txt", header=None, names=names)
    frame.insert(0, "id", "")
    return frame


def write_rows(data: DataSet, path: Path, rows: int) -> None:
    """`rows` rows of the data set's block, repeated with fresh ids."""
    if path.exists():
        return
    base = block(data, rows)
    with open(path, "w") as handle:
        for start in range(0, rows, len(base)):
            part = base.iloc[: min(len(base), rows - start)].copy()
            part["id"] = [f"{data.name}-{start + i:08d}" for i in range(len(part))]
            part.to_csv(handle, index=False, header=start == 0)


def train(data: DataSet, work: Path, epochs: int) -> Path:
    model = work / f"model_{data.name}"
    if not (model / "model.keras").exists():
        csv = work / f"train_{data.name}.csv"
        write_rows(data, csv, 20_000)
        sets = [*data.train_sets, f"train.epochs={epochs}", "train.seed=1"]
        log(f"vaepipe train {data.name}")
        run_measured(["train", "--input", str(csv), "--output", str(model), *set_args(sets)])
    return model


# ------------------------------------------------------------------ in-process measurements


def encoded(model_dir: Path, csv: Path, exclude: tuple[str, ...], rows: int):
    """The bundle and the first `rows` CSV rows typed and encoded in memory, as the job does."""
    from pipeline.artifacts.bundle import load_bundle
    from pipeline.core.records import RecordChunk
    from pipeline.features.column_types import apply_kinds

    bundle = load_bundle(str(model_dir))
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False, nrows=rows)
    frame = frame.where(frame != "", None)
    ids = list(frame.pop("id"))
    typed, dead = apply_kinds(
        RecordChunk(str(csv), ids, [""] * len(ids), frame), bundle.encoding.kinds, exclude
    )
    assert not dead, f"{len(dead)} rows dead-lettered while typing"
    return bundle, typed, bundle.encoding.encode(typed.frame)


def bare_network(model):
    """A plain Keras MLP of the bundle model's widths: encoder input -> hidden -> 2*latent;
    latent -> reversed hidden -> the likelihood heads' total width."""
    import keras

    layout = model.layout
    inputs = 2 * layout.n_numeric + layout.onehot_dim + layout.n_bernoulli
    heads = 2 * layout.n_numeric + layout.onehot_dim + layout.n_bernoulli
    x = keras.Input((inputs,))
    h = x
    for units in model.hidden_units:
        h = keras.layers.Dense(units, activation=model.activation)(h)
    code = keras.layers.Dense(2 * model.latent_dim)(h)
    h = code[:, : model.latent_dim]
    for units in reversed(model.hidden_units):
        h = keras.layers.Dense(units, activation=model.activation)(h)
    out = keras.layers.Dense(heads)(h)
    return keras.Model(x, [out, code]), inputs


def best_rows_per_s(steps: dict, inputs: dict, rounds: int = SCORE_ROUNDS) -> dict[str, float]:
    """Rows/s of each `steps[name](inputs[name])`: one warm-up call each (compilation), then
    `rounds` rounds that time every step once, in turn, keeping each step's best pass. Taking
    turns makes a burst of load on a shared machine hit one round of every step, not all the
    passes of one step."""
    for name, step in steps.items():
        step(inputs[name][: min(len(inputs[name]), 20_000)])
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step(inputs[name])
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: len(inputs[name]) / seconds for name, seconds in best.items()}


def batched(call, batch: int):
    """`call` per fixed-size batch (the last padded), results to NumPy: how scoring calls."""

    def step(inputs: np.ndarray) -> None:
        for start in range(0, len(inputs), batch):
            part = inputs[start : start + batch]
            if len(part) < batch:
                part = np.concatenate(
                    [part, np.zeros((batch - len(part), part.shape[1]), part.dtype)]
                )
            out = call(part)
            for value in _parts(out):
                np.asarray(value)

    return step


def _parts(out) -> list:
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, list | tuple) else [out]


@dataclass
class InMemory:
    rows: int
    bare: dict[int, float]  # batch -> rows/s
    step: dict[int, float]  # score_batches (the product: XLA network, graph likelihood)
    graph: dict[int, float]  # the same, `scoring_function(jit_compile=False)`: no XLA
    keras_predict: dict[int, float]  # model.predict_on_batch loop (before issue 14)
    outputs_rps: float  # to_outputs over chunks of data.chunk_rows
    max_rel_diff: float  # scores: score_batches at the default batch vs the old step


def in_memory(model_dir: Path, csv: Path, data: DataSet, rows: int) -> InMemory:
    from configs import VaepipeConfig
    from pipeline.scoring.core import exact_float32_scoring, score_batches
    from pipeline.scoring.outputs import OutputContext, to_outputs

    exact_float32_scoring()
    bundle, typed, inputs = encoded(model_dir, csv, data.exclude, rows)
    model = bundle.model
    bare, _ = bare_network(model)
    x = np.zeros((len(inputs), bare.input_shape[1]), np.float32)
    x[:] = np.random.default_rng(0).normal(size=x.shape[1]).astype(np.float32)
    result = InMemory(len(inputs), {}, {}, {}, {}, 0.0, 0.0)
    graph = model.scoring_function(jit_compile=False)
    for batch in BATCHES:
        log(f"{data.name}: in-memory steps at batch {batch}")
        steps = {
            "bare": batched(bare.predict_on_batch, batch),
            "step": lambda v, b=batch: score_batches(model, v, b),
            "graph": batched(graph, batch),
            "keras": batched(model.predict_on_batch, batch),
        }
        rps = best_rows_per_s(steps, {"bare": x, "step": inputs, "graph": inputs, "keras": inputs})
        result.bare[batch], result.step[batch] = rps["bare"], rps["step"]
        result.graph[batch], result.keras_predict[batch] = rps["graph"], rps["keras"]
    config = VaepipeConfig()
    # Today's scores (the product's step at the default batch) against the old step's
    # (predict_on_batch at the old default batch), on the same rows.
    new = score_batches(model, inputs, config.scoring.batch_size)["score"]
    old = old_scores(model, inputs)
    result.max_rel_diff = float(np.max(np.abs(new - old) / np.abs(old)))
    ctx = OutputContext.from_bundle(bundle, config)
    terms = score_batches(model, inputs, 1024)
    chunk = config.data.chunk_rows
    ids = typed.record_ids
    passthrough = typed.frame[[c for c in data.exclude if c in typed.frame.columns]]

    def outputs(_: np.ndarray) -> None:
        for start in range(0, len(inputs), chunk):
            part = {k: v[start : start + chunk] for k, v in terms.items()}
            to_outputs(
                ids[start : start + chunk], part, passthrough.iloc[start : start + chunk], ctx
            )

    result.outputs_rps = best_rows_per_s({"o": outputs}, {"o": inputs}, rounds=2)["o"]
    return result


def old_scores(model, inputs: np.ndarray) -> np.ndarray:
    """Scores as `score_batches` gave them before issue 14: `predict_on_batch` on batches of
    the old default size, the last one padded."""
    out = []
    for start in range(0, len(inputs), OLD_BATCH):
        part = inputs[start : start + OLD_BATCH]
        pad = np.zeros((OLD_BATCH - len(part), part.shape[1]), part.dtype)
        score = np.asarray(model.predict_on_batch(np.concatenate([part, pad]))["score"])
        out.append(score[: len(part)])
    return np.concatenate(out)


# ------------------------------------------------------------------------------ the CLI job


def score_run(model: Path, csv: Path, out: Path, sets: list[str] = ()) -> Run:
    if out.exists():
        shutil.rmtree(out)
    args = ["score", "--model", str(model), "--input", str(csv), "--output", str(out)]
    return run_measured(args + set_args(sets))


STAGES = (  # (stage, substrings of a frame, any of which puts a sample in it), first match wins
    ("imports", ("_find_and_load", "_call_with_frames_removed")),
    (
        "TFDV validation branch",
        (
            "tensorflow_data_validation",
            "features/validation.py",
            "features/statistics.py",
            "features/drift.py",
        ),
    ),
    ("reading CSV (sources)", ("pipeline/sources/",)),
    ("typing columns", ("column_types.py",)),
    ("encoding", ("tabular_encoding.py", "features/encode.py")),
    ("model call (scoring core)", ("scoring/core.py", "scoring/handler.py")),
    ("duplicate-id count", ("CountDuplicateIds", "_id_buckets", "_bucket_duplicates")),
    ("outputs (p-values, contributions, tables)", ("scoring/outputs.py",)),
    ("Parquet writes", ("parquetio", "sinks/parquet.py", "pyarrow/parquet")),
    ("loading the bundle", ("load_bundle", "artifacts/bundle.py")),
    ("pickling the pipeline", ("pickler", "dill")),
    ("the HTML report after the job", ("pipeline/report/",)),
    ("output lease heartbeat", ("OutputLease._beat",)),
    ("Beam runner, coders", ("apache_beam",)),
)


def profile_job(model: Path, csv: Path, out: Path, rate: int = 50) -> dict[str, float] | None:
    """Share of py-spy samples per stage of one `vaepipe score` (all threads, on-CPU only)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return None
    if out.exists():
        shutil.rmtree(out)
    raw = out.with_suffix(".pyspy.txt")
    command = [spy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--", *CLI, "score",
               "--model", str(model), "--input", str(csv), "--output", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not raw.exists():
        log(f"py-spy failed: {done.stderr[-600:]}")
        return None
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[_stage(stack)] += int(n)
    total = sum(counts.values())
    return {stage: counts[stage] / total for stage, _ in (*STAGES, ("other", ()))} | {
        "samples": total
    }


def _stage(stack: str) -> str:
    for stage, marks in STAGES:
        if any(mark in stack for mark in marks):
            return stage
    return "other"


# ---------------------------------------------------------------------------------- report


@dataclass
class Measured:
    data: DataSet
    memory: InMemory
    runs: dict[int, Run] = field(default_factory=dict)
    sampled: Run | None = None  # validation_sample_rate=0.1 at the large row count
    stages: dict | None = None
    load: tuple = ()
    import_s: float = float("nan")


def measure_set(data: DataSet, work: Path, rows: int, epochs: int, in_rows: int) -> Measured:
    model = train(data, work, epochs)
    files = {n: work / f"score_{data.name}_{n}.csv" for n in (1_000, rows)}
    for n, path in files.items():
        write_rows(data, path, n)
    load = os.getloadavg()
    memory = in_memory(model, files[rows], data, in_rows)
    m = Measured(data, memory, load=load)
    for n, path in files.items():
        log(f"{data.name}: vaepipe score {n} rows")
        m.runs[n] = score_run(model, path, work / f"out_{data.name}_{n}")
    log(f"{data.name}: vaepipe score {rows} rows, validation_sample_rate=0.1")
    rate = ["schema.validation_sample_rate=0.1"]
    m.sampled = score_run(model, files[rows], work / f"out_{data.name}_sampled", rate)
    log(f"{data.name}: py-spy of vaepipe score {rows} rows")
    m.stages = profile_job(model, files[rows], work / f"out_{data.name}_spy")
    m.import_s = import_seconds()
    return m


def report(m: Measured) -> str:
    load = ", ".join(f"{v:.1f}" for v in m.load)
    lines = [f"### {m.data.name} (load average before the in-memory part: {load})", ""]
    return "\n".join(lines + _memory_lines(m.memory) + _job_lines(m) + _stage_lines(m))


def _memory_lines(mem: InMemory) -> list[str]:
    table = pd.DataFrame(
        {
            "batch": list(BATCHES),
            "(a) bare MLP rows/s": [mem.bare[b] for b in BATCHES],
            "(b) score_batches rows/s": [mem.step[b] for b in BATCHES],
            "(b) cost / (a)": [mem.bare[b] / mem.step[b] for b in BATCHES],
            "no-XLA graph cost / (a)": [mem.bare[b] / mem.graph[b] for b in BATCHES],
            "predict_on_batch loop rows/s": [mem.keras_predict[b] for b in BATCHES],
            "its cost / (a)": [mem.bare[b] / mem.keras_predict[b] for b in BATCHES],
        }
    )
    return [
        f"In memory, {mem.rows:,} encoded rows (cost: times slower than the bare pass):",
        "",
        markdown(table, floatfmt=",.2f"),
        "",
        f"Scores of score_batches (default batch) vs predict_on_batch at batch {OLD_BATCH} "
        f"(the step before issue 14): largest relative difference {mem.max_rel_diff:.2e}. "
        f"Outputs step (to_outputs per 4096-row chunk): {mem.outputs_rps:,.0f} rows/s.",
        "",
    ]


def _job_lines(m: Measured) -> list[str]:
    small, big_n = m.runs[1_000], max(m.runs)
    big = m.runs[big_n]
    marginal = (big_n - 1_000) / (big.seconds - small.seconds)
    best = max(BATCHES, key=lambda b: m.memory.bare[b])
    ceiling = m.memory.bare[best]
    rows = [
        {"rows": f"{n:,}", "wall s": r.seconds, "rows/s (wall)": n / r.seconds,
         "peak RSS MiB": r.peak_mib}
        for n, r in m.runs.items()
    ]  # fmt: skip
    lines = [
        "`vaepipe score` CSV -> Parquet (DirectRunner, defaults):",
        "",
        markdown(pd.DataFrame(rows), floatfmt=",.1f"),
        "",
        f"Marginal rows/s beyond 1k rows: {marginal:,.0f} = {marginal / ceiling:.3f} of the bare "
        f"pass at its best batch ({best}: {ceiling:,.0f} rows/s); start-up (the 1k-row run) "
        f"{small.seconds:.1f} s, of which `import pipeline.jobs.score` {m.import_s:.1f} s; "
        f"peak RSS {big.peak_mib / small.peak_mib:.2f}x of the 1k-row run.",
    ]
    if m.sampled is not None:
        lines.append(
            f"validation_sample_rate 0.1 at {big_n:,} rows: {m.sampled.seconds:.1f} s vs "
            f"{big.seconds:.1f} s at the default."
        )
    return lines


def _stage_lines(m: Measured) -> list[str]:
    if not m.stages:
        return []
    stages = dict(m.stages)
    samples = stages.pop("samples")
    shares = pd.DataFrame({"stage": list(stages), "share": list(stages.values())})
    title = f"Where the {max(m.runs):,}-row job's time goes (py-spy 50 Hz, {samples} samples):"
    return ["", title, "", markdown(shares, floatfmt=".1%")]


def import_seconds() -> float:
    """Wall seconds of `python -c "import pipeline.jobs.score"` (what every job imports)."""
    started = time.perf_counter()
    subprocess.run([CLI[0], "-c", "import pipeline.jobs.score"], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--in-memory-rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sets", nargs="+", default=["synthetic", "nsl_kdd"])
    parser.add_argument("--work", type=Path, help="keep files and models here (reused)")
    parser.add_argument("--quick", action="store_true", help="20k rows, 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.in_memory_rows, args.epochs = 20_000, 20_000, 1
    return args


def main() -> None:
    args = parse_args()
    print(f"machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="vaepipe-score-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.sets:
            data = {"synthetic": SYNTHETIC, "nsl_kdd": NSL}[name]
            print(report(measure_set(data, work, args.rows, args.epochs, args.in_memory_rows)))
            print()


if __name__ == "__main__":
    main()
