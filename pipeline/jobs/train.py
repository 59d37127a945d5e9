"""The training job: prepare data (Beam), fit the VAE on streamed shards, calibrate, bundle."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from apache_beam.io.filesystems import FileSystems
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from configs import ConfigError, VaepipeConfig
from configs.loader import dump_config, to_dict
from configs.schema import LATENT_AUTO, TrainConfig
from pipeline.archive.dictionary import dictionary_from_files, dictionary_line
from pipeline.artifacts import bundle as bundle_lib
from pipeline.artifacts.shards import (
    PreparedPaths,
    epoch_dataset,
    load_split,
    shard_dataset,
    split_rows,
)
from pipeline.core.fs import read_bytes, read_text, write_text
from pipeline.jobs.prepare import build_prepare_pipeline
from pipeline.jobs.progress import epoch_progress
from pipeline.jobs.reports import leave_report
from pipeline.jobs.runner import run_pipeline
from pipeline.jobs.settings import check_model_settings
from pipeline.jobs.validate import check_training_inputs
from pipeline.kinds import Encoding, load_encoding
from pipeline.scoring.calibration import calibrate

_LOG = logging.getLogger(__name__)
MIN_BATCH_SIZE = 16  # the smallest batch train.min_steps_per_epoch may choose
MIN_CALIBRATION_ROWS = 10  # fewer calibration rows are refused (see check_rows)
# Input files at most this large are fingerprinted by content too (resumed runs).
CONTENT_HASH_BYTES = 4 << 20
MAX_HASHED_FILES = 1000


@dataclass(frozen=True)
class TrainResult:
    model_dir: str
    history: dict
    rows: dict
    threshold: float


def train(
    input_pattern: str,
    model_dir: str,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Run the whole training job and write a verified model bundle to `model_dir`."""
    check_model_settings(config)  # a bad setting fails now, not after the data job
    check_training_inputs(input_pattern, config)
    if config.train.device_resident:
        _check_resident_backend()  # before the data job, not after it
    # The prepared data lives beside the bundle (gs:// on Dataflow, where workers write it).
    # It stays there until the bundle is written, so a killed run can resume.
    paths = PreparedPaths(os.path.join(model_dir, "_work"))
    started = time.time()
    fingerprint = _fingerprint(input_pattern, config)
    if _prepared(paths) == fingerprint:
        echo(f"[1/4] resuming: data already prepared for {input_pattern}")
    else:
        _prepare(input_pattern, config, paths, fingerprint, beam_args, test_pipeline, echo)
    columns = _column_decisions(paths)
    for line in column_lines(columns):
        echo(f"      {line}")
    encoding = load_encoding(config.data.kind, read_text(paths.encoding))
    rows = split_rows(paths, encoding.layout().input_dim)
    echo(f"      split {rows}")
    try:
        check_rows(rows, config)
    except ValueError:
        FileSystems.delete([paths.root])  # useless for any later run: prepare afresh
        raise

    echo(f"[2/4] training the VAE on {rows['train']} rows ({len(encoding.columns)} features)")
    echo(f"      {latent_line(encoding, config)}")
    batch_size = effective_batch_size(rows["train"], config.train)
    if batch_size < config.train.batch_size:
        echo(
            f"      batch size {batch_size} instead of {config.train.batch_size}, for at least "
            f"{config.train.min_steps_per_epoch} steps per epoch (train.min_steps_per_epoch)"
        )
    local = _local_work_dir(paths)
    models, histories = train_members(
        config,
        local,
        lambda member, work: _fit(paths, encoding, member, rows["train"], batch_size, work, echo),
        echo,
    )
    model, history = models[0], histories[0]

    held_out = calibration_splits(rows)
    echo(f"[3/4] calibrating on {calibration_line(rows, held_out)}")
    dim = encoding.layout().input_dim
    batches = (
        b.numpy()
        for split in held_out
        for b in shard_dataset(paths.shard_pattern(split), dim, 8192)
    )
    calibration, scores, quality = calibrated(models, batches, held_out, config, echo)

    echo(f"[4/4] writing the model bundle to {model_dir}")
    report = {
        "history": history,
        **member_histories(histories),
        "rows": rows,
        "batch_size": batch_size,
        "seconds": round(time.time() - started, 1),
        "columns": columns,
        "calibration": quality,
    }
    schema, statistics = read_bytes(paths.schema), read_bytes(paths.statistics)
    parts = bundle_parts(encoding, schema, statistics, calibration, scores, config, report)
    if FileSystems.exists(paths.record_columns):
        parts[bundle_lib.COLUMNS_FILE] = read_bytes(paths.record_columns)
    dictionary = _kept_dictionary(input_pattern, encoding, config)
    if dictionary is not None:
        parts[bundle_lib.DICTIONARY_FILE] = dictionary
        echo(f"      {dictionary_line(dictionary)}")
    bundle_lib.write_bundle(model, model_dir, parts, config.data.kind, local, tuple(models[1:]))
    leave_report(model_dir, echo=echo)
    FileSystems.delete([paths.root])
    shutil.rmtree(local, ignore_errors=True)  # no-op when it was inside paths.root
    echo(
        f"done: model bundle in {model_dir} (threshold {calibration.threshold:.3f} nats, "
        f"target FPR {calibration.target_fpr})"
    )
    return TrainResult(model_dir, history, rows, calibration.threshold)


def effective_batch_size(n_train: int, train: TrainConfig) -> int:
    """`train.batch_size`, made smaller (to MIN_BATCH_SIZE rows at least) when the train split
    is too small for `train.min_steps_per_epoch` optimizer steps per epoch at that size.

    Early stopping counts epochs, so a 200-row split at batch 256 would stop after a few
    dozen optimizer steps, far from trained (ADBench's small sets: docs/BENCHMARKS.md).
    """
    wanted = max(MIN_BATCH_SIZE, math.ceil(n_train / train.min_steps_per_epoch))
    return min(train.batch_size, wanted)


def _prepare(input_pattern, config, paths, fingerprint, beam_args, test_pipeline, echo) -> None:
    """Run the Beam data job, then mark the prepared data complete (for resumed runs)."""
    if FileSystems.exists(paths.root):  # stale or foreign prepared data: start clean
        FileSystems.delete([paths.root])
    echo(f"[1/4] preparing data (Beam): {input_pattern}")
    curated = curated_schema(config)
    metrics = run_pipeline(
        lambda root: build_prepare_pipeline(root, input_pattern, config, paths, curated),
        beam_args,
        test_pipeline,
    )
    echo(
        f"      rows read {metrics.get('rows_read', '?')}, dead-lettered "
        f"{metrics.get('rows_dead_lettered', 0)}"
    )
    write_text(paths.marker, fingerprint)


def _fingerprint(input_pattern: str, config: VaepipeConfig) -> str:
    """What the prepared data depends on: a resumed run must have asked for the same, of the
    same files (a changed, added or removed input file means preparing afresh)."""
    text = json.dumps(
        {"input": input_pattern, "files": input_files(input_pattern), "config": to_dict(config)},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def input_files(input_pattern: str) -> list[dict]:
    """The files `input_pattern` matches (a folder: every file below it), each with its size,
    modification time and, under CONTENT_HASH_BYTES (for the first MAX_HASHED_FILES), the
    SHA-256 of its content (a rewrite within the clock's resolution keeps size and time)."""
    if input_pattern.startswith("bq://"):
        return []  # a table or query: its partition and query are in the config
    pattern = input_pattern
    if pattern.endswith("/") or ("://" not in pattern and os.path.isdir(pattern)):
        pattern = os.path.join(pattern, "**")
    try:
        metadata = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001  the job itself reports a pattern that matches nothing
        return []
    files = []
    for m in sorted(metadata, key=lambda m: m.path):
        entry = {"path": m.path, "size": m.size_in_bytes, "mtime": m.last_updated_in_seconds}
        if m.size_in_bytes <= CONTENT_HASH_BYTES and len(files) < MAX_HASHED_FILES:
            entry["sha256"] = hashlib.sha256(read_bytes(m.path)).hexdigest()
        files.append(entry)
    return files


def calibration_splits(rows: dict) -> tuple[str, ...]:
    """The held-out splits the threshold is calibrated on: the calibration split, joined by
    the validation split when it alone has fewer than MIN_CALIBRATION_ROWS rows.

    Both are held out from the gradient steps (validation only picks the kept epoch), so on a
    small table (70 rows: 4 calibration, 10 validation) the threshold rests on 14 unseen rows
    instead of refusing a set that trains well."""
    if rows["calibration"] >= MIN_CALIBRATION_ROWS:
        return ("calibration",)
    return ("calibration", "validation")


def check_rows(rows: dict, config: VaepipeConfig) -> None:
    """Refuse a training set too small to train on or to set a threshold with.

    The threshold is a quantile of the held-out scores (`calibration_splits`): below
    MIN_CALIBRATION_ROWS it is one of a handful of scores, and the false-positive rate it
    gives is anyone's guess (one calibration row put the threshold at that row's score: 76%
    of normal records flagged)."""
    held_out = sum(rows[split] for split in calibration_splits(rows))
    if rows["train"] == 0 or held_out < MIN_CALIBRATION_ROWS:
        t = config.train
        fraction = t.calibration_fraction + t.validation_fraction
        needed = math.ceil(MIN_CALIBRATION_ROWS / fraction)
        wanted = math.ceil(10 / config.scoring.target_fpr / t.calibration_fraction)
        raise ValueError(
            f"not enough rows to train: {rows}. The threshold needs at least "
            f"{MIN_CALIBRATION_ROWS} held-out rows (calibration, with validation when "
            f"calibration alone has fewer; train.calibration_fraction {t.calibration_fraction}"
            f" + train.validation_fraction {t.validation_fraction}): give at least {needed} "
            f"rows, and about {wanted} for the threshold to resolve scoring.target_fpr "
            f"{config.scoring.target_fpr} (10 calibration scores above it)"
        )


def calibration_line(rows: dict, held_out: tuple[str, ...]) -> str:
    """What the threshold is calibrated on, for the job's log."""
    n = sum(rows[split] for split in held_out)
    if held_out == ("calibration",):
        return f"{n} held-out rows"
    return (
        f"{n} held-out rows (calibration and validation: the calibration split alone has "
        f"{rows['calibration']} < {MIN_CALIBRATION_ROWS})"
    )


def calibration_quality(scores: np.ndarray, threshold: float, config: VaepipeConfig) -> dict:
    """How well `n` calibration scores pin down the false-positive rate of the threshold.

    With m = floor(n * target) scores above it, the threshold sits at about the (m+1)-th
    largest calibration score, and the share of normal records scoring above that order
    statistic is Beta(m + 1, n - m) distributed: its mean and 90% interval are reported.
    p-values step by 1/n. Fewer than 10 scores above the threshold is warned about."""
    from scipy.stats import beta

    n, target = len(scores), config.scoring.target_fpr
    m = min(int(math.floor(n * target)), n - 1)
    low, high = (float(v) for v in beta.ppf([0.05, 0.95], m + 1, n - m))
    quality = {
        "rows": n,
        "target_fpr": target,
        "scores_above_threshold": int(np.sum(scores > threshold)),
        "p_value_resolution": 1.0 / n,
        "expected_fpr": (m + 1) / (n + 1),
        "fpr_90_interval": [round(low, 6), round(high, 6)],
        "warning": None,
    }
    if n * target < 10:
        wanted = math.ceil(10 / target / config.train.calibration_fraction)
        quality["warning"] = (
            f"the threshold rests on {n} calibration rows ({n * target:.1f} expected above "
            f"it): the realised false-positive rate for target {target} is {low:.2%} to "
            f"{high:.2%} (90% interval), and p-values step by 1/{n} = {1 / n:.3g}. "
            f"Train on about {wanted} rows for a reliable threshold"
        )
    return quality


def column_lines(columns: dict | None) -> list[str]:
    """One line per column not modelled as read: left out, or read as a boolean."""
    lines = []
    for name, d in (columns or {}).items():
        if d["decision"] != "modelled":
            lines.append(f"WARNING column {name!r} left out of the model ({d['kind']}): {d['why']}")
        elif d["kind"] == "boolean":
            lines.append(f"column {name!r} read as a boolean ({d['why']})")
    return lines


def _column_decisions(paths: PreparedPaths) -> dict | None:
    return json.loads(read_text(paths.columns)) if FileSystems.exists(paths.columns) else None


def _prepared(paths: PreparedPaths) -> str | None:
    return read_text(paths.marker) if FileSystems.exists(paths.marker) else None


def _local_work_dir(paths: PreparedPaths) -> str:
    """Checkpoints and the resume point: in the work folder when it is local (so a killed run
    resumes), else a local temporary folder (Keras writes local files)."""
    if "://" in paths.root:
        return tempfile.mkdtemp(prefix="vaepipe-train-")
    local = os.path.join(paths.root, "keras")
    os.makedirs(local, exist_ok=True)
    return local


def curated_schema(config: VaepipeConfig) -> schema_pb2.Schema | None:
    if config.schema.schema_file is None:
        return None
    return text_format.Parse(read_text(config.schema.schema_file), schema_pb2.Schema())


def latent_line(encoding: Encoding, config: VaepipeConfig) -> str:
    """How large the latent code is, and why (`model.latent_dim`, or `auto` from the width)."""
    n_features = len(encoding.layout().feature_names)
    size = config.model.latent_size(n_features)
    if config.model.latent_dim != LATENT_AUTO:
        return f"latent code: {size} dimensions (model.latent_dim)"
    return f"latent code: {size} dimensions (model.latent_dim auto, {n_features} feature columns)"


def new_model(encoding: Encoding, config: VaepipeConfig):
    """A fresh, seeded VAE for `encoding`'s layout with the config's model settings."""
    import keras

    from vae_model import VAE

    keras.utils.set_random_seed(config.train.seed)
    m = config.model
    return VAE(
        layout=encoding.layout().to_config(),
        latent_dim=m.latent_size(len(encoding.layout().feature_names)),
        hidden_units=m.hidden_units,
        activation=m.activation,
        beta=m.beta,
        kl_warmup_epochs=m.kl_warmup_epochs,
        min_log_var=m.min_log_var,
        max_log_var=m.max_log_var,
        seed=config.train.seed,
        numeric_variance=m.numeric_variance,
        score_tolerance=m.score_tolerance,
        trim_fraction=m.trim_fraction,
        trim_start_epoch=m.trim_start_epoch,
    )


def member_configs(config: VaepipeConfig) -> list[VaepipeConfig]:
    """The config each ensemble member trains with: the run's, with the member's seed
    (`vae_model.ensemble.member_seed`), which seeds its weights and its batches' order, and
    its trim (`ModelConfig.member_trim`: members after the first may fit a trimmed ELBO)."""
    from vae_model.ensemble import member_seed

    return [
        replace(
            config,
            train=replace(config.train, seed=member_seed(config.train.seed, k)),
            model=replace(config.model, trim_fraction=config.model.member_trim(k)),
        )
        for k in range(config.model.ensemble_size)
    ]


def member_work_dir(work: str, member: int) -> str:
    """Member 0 checkpoints and resumes in `work` itself (as a single model does), member k
    in `work/member_k`, so an interrupted ensemble resumes each member where it was."""
    return work if member == 0 else os.path.join(work, f"member_{member}")


def train_members(
    config: VaepipeConfig,
    work: str,
    fit_one: Callable[[VaepipeConfig, str], tuple[object, dict]],
    echo: Callable[[str], object],
) -> tuple[list, list[dict]]:
    """Every ensemble member trained by `fit_one(member_config, work_dir)`, in order: the
    models and their per-epoch histories (one of each for a single model)."""
    models, histories = [], []
    for k, member in enumerate(member_configs(config)):
        if config.model.ensemble_size > 1:
            echo(member_line(k, member))
        model, history = fit_one(member, member_work_dir(work, k))
        models.append(model)
        histories.append(history)
    return models, histories


def calibrated(
    models: Sequence,
    batches: Iterable[np.ndarray],
    held_out: Sequence[str],
    config: VaepipeConfig,
    echo: Callable[[str], object],
) -> tuple[object, np.ndarray, dict]:
    """The calibration of the members' scorer on the held-out rows, their sorted scores, and
    the report's calibration entry (a warning is echoed too)."""
    calibration, scores = calibrate(scorer_of(models), batches, config)
    quality = calibration_quality(scores, calibration.threshold, config)
    quality["held_out_splits"] = list(held_out)
    if quality["warning"]:
        echo(f"WARNING {quality['warning']}")
    return calibration, scores, quality


def member_line(member: int, config: VaepipeConfig) -> str:
    size = config.model.ensemble_size
    trim = config.model.trim_fraction
    objective = f"trimmed ELBO {trim:g}" if trim else "full ELBO"
    seed = config.train.seed
    return f"      ensemble member {member + 1} of {size} (train.seed {seed}, {objective})"


def scorer_of(models: Sequence) -> object:
    """The one model, or the ensemble of them, as scoring sees it."""
    if len(models) == 1:
        return models[0]
    from vae_model.ensemble import VAEEnsemble

    return VAEEnsemble(models)


def member_histories(histories: Sequence[dict]) -> dict:
    """The report's entry for members after the first (their per-epoch terms), if any."""
    return {"member_histories": list(histories[1:])} if len(histories) > 1 else {}


def fit_model(
    model, train_data, val_data, config: VaepipeConfig, n_train: int, batch: int, work: str, echo
) -> dict:
    """Train `model` (with `vae_model.fit_vae`); returns the per-epoch history.

    `train_data` is a stream of batches (then one epoch is `n_train / batch` steps) or a
    matrix of packed rows (batched here).
    """
    from vae_model import fit_vae

    t = config.train
    streamed = not isinstance(train_data, np.ndarray)
    progress = epoch_progress(t.epochs)
    history = fit_vae(
        model,
        train_data,
        val_data,
        callbacks=[progress] if progress is not None else (),
        epochs=t.epochs,
        learning_rate=t.learning_rate,
        patience=t.early_stopping_patience,
        checkpoint_dir=os.path.join(work, "checkpoints"),
        print_fn=echo,
        skip_nonfinite=t.on_nonfinite == "skip_batch",
        steps_per_epoch=math.ceil(n_train / batch) if streamed else None,
        batch_size=None if streamed else batch,
        resume_dir=os.path.join(work, "resume"),
        steps_per_execution=t.steps_per_execution,
        device_resident=t.device_resident,
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def bundle_parts(
    encoding: Encoding,
    schema: bytes,
    statistics: bytes,
    calibration,
    scores: np.ndarray,
    config: VaepipeConfig,
    report: dict,
) -> dict[str, bytes]:
    """The bundle's parts (all but the model), as bytes."""
    return {
        bundle_lib.ENCODING_FILE: encoding.to_json().encode(),
        bundle_lib.SCHEMA_FILE: schema,
        bundle_lib.STATISTICS_FILE: statistics,
        bundle_lib.CALIBRATION_FILE: calibration.to_json().encode(),
        bundle_lib.SCORES_FILE: bundle_lib.npy_bytes(scores),
        bundle_lib.CONFIG_FILE: dump_config(config).encode(),
        bundle_lib.REPORT_FILE: _json_bytes(report),
    }


FINISHED_HISTORY = "finished_history.json"  # written once a model in a work folder finished


def _fit(paths, encoding: Encoding, config: VaepipeConfig, n_train: int, batch: int, work, echo):
    """One model trained on the prepared shards; a model this work folder already finished
    (an ensemble member, before the run was stopped) is loaded instead of trained again."""
    finished = _finished(work)
    if finished is not None:
        echo("      already trained by the stopped run: loaded")
        return finished
    model, history = _train_new(paths, encoding, config, n_train, batch, work, echo)
    # fit_vae saved the finished model as its best checkpoint; the history marks it done.
    write_text(os.path.join(work, FINISHED_HISTORY), json.dumps(history))
    return model, history


def _finished(work: str) -> tuple | None:
    """The model and history a stopped run finished in `work`, if any (the work folder
    belongs to this run's data and config: `_prepare` clears it when they change)."""
    from vae_model.training import BEST_MODEL_FILENAME

    model_path = os.path.join(work, "checkpoints", BEST_MODEL_FILENAME)
    history_path = os.path.join(work, FINISHED_HISTORY)
    if not (os.path.exists(model_path) and os.path.exists(history_path)):
        return None
    return bundle_lib.load_model_file(model_path), json.loads(read_text(history_path))


def _train_new(paths, encoding: Encoding, config: VaepipeConfig, n_train, batch, work, echo):
    from vae_model.resume import resume_epoch

    model = new_model(encoding, config)
    t = config.train
    dim = encoding.layout().input_dim
    first_epoch = resume_epoch(os.path.join(work, "resume"))
    if first_epoch:
        echo(f"      resuming training after epoch {first_epoch}")
    if t.device_resident:
        train_data = load_split(paths, "train", dim)
        val_data = load_split(paths, "validation", dim)
    else:
        train_data = epoch_dataset(
            paths.shard_pattern("train"), dim, batch, t.seed, first_epoch, t.epochs
        )
        val_data = shard_dataset(paths.shard_pattern("validation"), dim, batch)
    return model, fit_model(model, train_data, val_data, config, n_train, batch, work, echo)


def _kept_dictionary(input_pattern: str, encoding, config: VaepipeConfig) -> bytes | None:
    """The first training records, kept in the bundle as the archive's dictionary (tables
    read from files; None for images, BigQuery and compress.keep_training_rows 0)."""
    if config.data.kind != "tabular" or input_pattern.startswith("bq://"):
        return None
    files = [f["path"] for f in input_files(input_pattern)]
    keep = config.compress.keep_training_rows
    return dictionary_from_files(files, config.data, encoding.kinds, keep)


def _check_resident_backend() -> None:
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(
            "train.device_resident needs the JAX backend (KERAS_BACKEND=jax). "
            f"Received: backend={keras.backend.backend()}"
        )


def _json_bytes(data: dict) -> bytes:
    return json.dumps(data, indent=1).encode()
