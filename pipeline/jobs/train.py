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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from apache_beam.io.filesystems import FileSystems
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from configs import ConfigError, VaepipeConfig
from configs.loader import dump_config, to_dict
from configs.schema import TrainConfig
from pipeline import bundle as bundle_lib
from pipeline.beam_runner import run_pipeline
from pipeline.encoding import Encoding, load_encoding
from pipeline.inference import score_batches
from pipeline.io import read_bytes, read_text, write_text
from pipeline.prepare import PreparedPaths, build_prepare_pipeline
from vae_model.resume import resume_epoch

_LOG = logging.getLogger(__name__)
# int8 codes span +-127 steps; this many posterior standard deviations of headroom past the
# calibration range keeps unusual (anomalous) records from clipping.
_CODE_HEADROOM = 1.5
MIN_BATCH_SIZE = 16  # the smallest batch train.min_steps_per_epoch may choose
PREPARED_MARKER = "PREPARED"


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
    encoding = load_encoding(config.data.kind, read_text(paths.encoding))
    rows = _split_rows(paths, encoding.layout().input_dim)
    echo(f"      split {rows}")
    if rows["train"] == 0 or rows["calibration"] == 0:
        raise ValueError(
            f"not enough rows to train: {rows} (need rows in train and calibration splits)"
        )

    echo(f"[2/4] training the VAE on {rows['train']} rows ({len(encoding.columns)} features)")
    batch_size = effective_batch_size(rows["train"], config.train)
    if batch_size < config.train.batch_size:
        echo(
            f"      batch size {batch_size} instead of {config.train.batch_size}, for at least "
            f"{config.train.min_steps_per_epoch} steps per epoch (train.min_steps_per_epoch)"
        )
    local = _local_work_dir(paths)
    model, history = _fit(paths, encoding, config, rows["train"], batch_size, local, echo)

    echo(f"[3/4] calibrating on {rows['calibration']} held-out rows")
    calibration, scores = _calibrate(model, paths, encoding, config)

    echo(f"[4/4] writing the model bundle to {model_dir}")
    report = {
        "history": history,
        "rows": rows,
        "batch_size": batch_size,
        "seconds": round(time.time() - started, 1),
    }
    parts = {
        bundle_lib.ENCODING_FILE: encoding.to_json().encode(),
        bundle_lib.SCHEMA_FILE: read_bytes(paths.schema),
        bundle_lib.STATISTICS_FILE: read_bytes(paths.statistics),
        bundle_lib.CALIBRATION_FILE: calibration.to_json().encode(),
        bundle_lib.SCORES_FILE: bundle_lib.npy_bytes(scores),
        bundle_lib.CONFIG_FILE: dump_config(config).encode(),
        bundle_lib.REPORT_FILE: _json_bytes(report),
    }
    _write_bundle(model, model_dir, parts, config.data.kind, local)
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
    curated = _curated_schema(config)
    metrics = run_pipeline(
        lambda root: build_prepare_pipeline(root, input_pattern, config, paths, curated),
        beam_args,
        test_pipeline,
    )
    echo(
        f"      rows read {metrics.get('rows_read', '?')}, dead-lettered "
        f"{metrics.get('rows_dead_lettered', 0)}"
    )
    write_text(os.path.join(paths.root, PREPARED_MARKER), fingerprint)


def _fingerprint(input_pattern: str, config: VaepipeConfig) -> str:
    """What the prepared data depends on: a resumed run must have asked for the same."""
    text = json.dumps({"input": input_pattern, "config": to_dict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _prepared(paths: PreparedPaths) -> str | None:
    marker = os.path.join(paths.root, PREPARED_MARKER)
    return read_text(marker) if FileSystems.exists(marker) else None


def _local_work_dir(paths: PreparedPaths) -> str:
    """Checkpoints and the resume point: in the work folder when it is local (so a killed run
    resumes), else a local temporary folder (Keras writes local files)."""
    if "://" in paths.root:
        return tempfile.mkdtemp(prefix="vaepipe-train-")
    local = os.path.join(paths.root, "keras")
    os.makedirs(local, exist_ok=True)
    return local


def _curated_schema(config: VaepipeConfig) -> schema_pb2.Schema | None:
    if config.schema.schema_file is None:
        return None
    return text_format.Parse(read_text(config.schema.schema_file), schema_pb2.Schema())


def shard_dataset(pattern: str, input_dim: int, batch_size: int):
    """Stream encoded shards as batches in file order (tf.data: bounded memory, any backend)."""
    return _blocks(pattern, input_dim).unbatch().batch(batch_size).prefetch(2)


def epoch_dataset(
    pattern: str, input_dim: int, batch_size: int, seed: int, first_epoch: int, epochs: int
):
    """Shuffled training batches for epochs `first_epoch..epochs-1`, one pass each.

    Each epoch's order depends only on (seed, epoch), not on how many epochs this process
    has run, so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def one_epoch(epoch: int):
        epoch_seed = seed * 100003 + epoch
        blocks = _blocks(pattern, input_dim, shuffle_seed=epoch_seed).unbatch()
        return blocks.shuffle(65536, seed=epoch_seed).batch(batch_size)

    # Python-built epochs (tf.data shuffle seeds must be Python ints), chained in order.
    # (A run killed after its last epoch resumes with nothing left to fit.)
    datasets = [one_epoch(epoch) for epoch in range(min(first_epoch, epochs - 1), epochs)]
    chained = datasets[0]
    for more in datasets[1:]:
        chained = chained.concatenate(more)
    return chained.prefetch(2)


def _blocks(pattern: str, input_dim: int, shuffle_seed=None):
    import tensorflow as tf

    files = tf.data.Dataset.from_tensor_slices(sorted(tf.io.gfile.glob(pattern)))
    if shuffle_seed is not None:
        files = files.shuffle(1 << 20, seed=shuffle_seed)
    return tf.data.TFRecordDataset(files).map(
        lambda block: tf.reshape(tf.io.decode_raw(block, tf.float32), [-1, input_dim])
    )


def _shard_pattern(paths: PreparedPaths, split: str) -> str:
    return os.path.join(paths.shards(split), "*.tfrecord")


def _split_rows(paths: PreparedPaths, input_dim: int) -> dict:
    """Rows per split, counted from the shard records without loading them into memory."""
    import tensorflow as tf

    counts = {}
    for split in ("train", "validation", "calibration"):
        files = tf.io.gfile.glob(_shard_pattern(paths, split))
        total = 0
        for block in tf.data.TFRecordDataset(files).map(tf.strings.length):
            total += int(block) // (4 * input_dim)
        counts[split] = total
    return counts


def _fit(paths, encoding: Encoding, config: VaepipeConfig, n_train: int, batch: int, work, echo):
    import keras

    from vae_model import VAE, fit_vae

    keras.utils.set_random_seed(config.train.seed)
    m, t = config.model, config.train
    model = VAE(
        layout=encoding.layout().to_config(),
        latent_dim=m.latent_dim,
        hidden_units=m.hidden_units,
        activation=m.activation,
        beta=m.beta,
        kl_warmup_epochs=m.kl_warmup_epochs,
        min_log_var=m.min_log_var,
        max_log_var=m.max_log_var,
        seed=t.seed,
        numeric_variance=m.numeric_variance,
        score_tolerance=m.score_tolerance,
    )
    dim = encoding.layout().input_dim
    resume_dir = os.path.join(work, "resume")
    first_epoch = resume_epoch(resume_dir)
    if first_epoch:
        echo(f"      resuming training after epoch {first_epoch}")
    if t.device_resident:
        train_data = _load_split(paths, "train", dim)
        val_data = _load_split(paths, "validation", dim)
    else:
        train_data = epoch_dataset(
            _shard_pattern(paths, "train"), dim, batch, t.seed, first_epoch, t.epochs
        )
        val_data = shard_dataset(_shard_pattern(paths, "validation"), dim, batch)
    history = fit_vae(
        model,
        train_data,
        val_data,
        epochs=t.epochs,
        learning_rate=t.learning_rate,
        patience=t.early_stopping_patience,
        checkpoint_dir=os.path.join(work, "checkpoints"),
        print_fn=echo,
        skip_nonfinite=t.on_nonfinite == "skip_batch",
        # Streams need the epoch length; resident rows are batched by fit_resident.
        steps_per_epoch=None if t.device_resident else math.ceil(n_train / batch),
        batch_size=batch if t.device_resident else None,
        resume_dir=resume_dir,
        steps_per_execution=t.steps_per_execution,
        device_resident=t.device_resident,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _check_resident_backend() -> None:
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(
            "train.device_resident needs the JAX backend (KERAS_BACKEND=jax). "
            f"Received: backend={keras.backend.backend()}"
        )


def _load_split(paths: PreparedPaths, split: str, input_dim: int) -> np.ndarray:
    """All packed rows of one split as a float32 matrix (for device-resident training)."""
    blocks = [block.numpy() for block in _blocks(_shard_pattern(paths, split), input_dim)]
    if not blocks:
        return np.zeros((0, input_dim), np.float32)
    return np.concatenate(blocks).astype(np.float32, copy=False)


def _calibrate(model, paths: PreparedPaths, encoding: Encoding, config: VaepipeConfig):
    """Threshold and p-value reference from held-out scores; per-feature NLL baselines."""
    dim = encoding.layout().input_dim
    parts = {"score": [], "feature_nll": [], "z_mean": []}
    for batch in shard_dataset(_shard_pattern(paths, "calibration"), dim, 8192):
        out = score_batches(model, batch.numpy(), config.scoring.batch_size)
        for key in parts:
            parts[key].append(out[key])
    scores = np.sort(np.concatenate(parts["score"]).astype(np.float64))
    feature_nll = np.concatenate(parts["feature_nll"])
    z_mean = np.concatenate(parts["z_mean"])
    threshold = float(np.quantile(scores, 1.0 - config.scoring.target_fpr))
    code_scale = np.maximum(np.abs(z_mean).max(axis=0), 1e-6) * _CODE_HEADROOM / 127.0
    calibration = bundle_lib.Calibration(
        target_fpr=config.scoring.target_fpr,
        threshold=threshold,
        feature_baseline=tuple(float(v) for v in np.median(feature_nll, axis=0)),
        code_scale=tuple(float(v) for v in code_scale),
        n_calibration=int(len(scores)),
    )
    return calibration, scores


def _write_bundle(model, model_dir: str, parts: dict, data_kind: str, local: str) -> None:
    local_model = os.path.join(local, bundle_lib.MODEL_FILE)
    model.save(local_model)
    manifest_path = os.path.join(model_dir, bundle_lib.MANIFEST_FILE)
    if FileSystems.exists(manifest_path):  # an old bundle stays invalid until the new one is done
        FileSystems.delete([manifest_path])
    with open(local_model, "rb") as handle:
        bundle_lib.write_part(model_dir, bundle_lib.MODEL_FILE, handle.read())
    for name, data in parts.items():
        bundle_lib.write_part(model_dir, name, data)
    bundle_lib.write_manifest(model_dir, data_kind)


def _json_bytes(data: dict) -> bytes:
    return json.dumps(data, indent=1).encode()
