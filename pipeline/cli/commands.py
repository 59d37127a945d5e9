"""What each `vaepipe` subcommand does (argument parsing lives in `pipeline.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from apache_beam.io.filesystems import FileSystems

from configs import ConfigError, VaepipeConfig, builtin_config_path, load_config, save_config
from pipeline.bundle import CONFIG_FILE, MANIFEST_FILE

if TYPE_CHECKING:
    from apache_beam.runners.runner import PipelineResult

    from pipeline.bigquery import BigQueryOutput

DEMO_CONFIG = [
    "data.id_column=id",
    "data.exclude_columns=[label]",
    "train.epochs=30",
]
DEMO_ROWS = 20000
# The image demo: a small, quick model (the tests' settings); 5% so that a batch of a few
# hundred normal images shows a measurable flag rate.
DEMO_IMAGE_CONFIG = [
    "train.epochs=15",
    "train.batch_size=32",
    "train.learning_rate=0.003",
    "train.calibration_fraction=0.3",
    "model.hidden_units=[128,32]",
    "model.latent_dim=8",
    "model.kl_warmup_epochs=3",
    "scoring.target_fpr=0.05",
]
DEMO_IMAGES = 600
MIN_DEMO_IMAGES = 100
NORMAL, RING = "stroke", "ring"


PLACEHOLDER = "{partition}"
_RELATIVE_DAYS = {"today": 0, "yesterday": 1}
_PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# Where a training run's data came from; never carried over to the model's later runs.
_RUN_SPECIFIC = ("bigquery_query", "partition")


def training_config(args: argparse.Namespace) -> VaepipeConfig:
    """Config files given (or the built-in tabular one), then --set overrides."""
    files = _local_configs(args.config) or [builtin_config_path("tabular")]
    return load_config(files, args.set)


def model_config(args: argparse.Namespace, model_dir: str) -> VaepipeConfig:
    """For a model's later runs: the config it was trained with, unless files are given."""
    if args.config:
        return load_config(_local_configs(args.config), args.set)
    import yaml

    from configs.loader import from_dict, parse_override
    from pipeline.io import read_text

    tree = _known_keys(yaml.safe_load(read_text(os.path.join(model_dir, CONFIG_FILE))))
    for key in _RUN_SPECIFIC:
        tree.get("data", {}).pop(key, None)
    for item in args.set:
        for section, values in parse_override(item).items():
            tree.setdefault(section, {}).update(values)
    config = from_dict(tree)
    config.validate()
    return config


def _known_keys(tree: dict) -> dict:
    """A bundle's saved config without keys this vaepipe no longer has (dropped, with a note).

    User configs are strict (an unknown key is an error); a bundle written by another version
    may carry a retired key, which must not stop it from scoring.
    """
    import dataclasses

    defaults = VaepipeConfig()
    out = {}
    for section, values in tree.items():
        if not hasattr(defaults, section):
            print(f"note: ignoring retired config section {section!r} in the model bundle")
            continue
        known = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        for key in sorted(set(values) - known):
            print(f"note: ignoring retired config key {section}.{key} in the model bundle")
        out[section] = {k: v for k, v in values.items() if k in known}
    return out


def cmd_train(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.train import train

    train(args.input, args.output, training_config(args), beam_args)
    return 0


def cmd_score(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.score import score

    score(args.model, args.input, args.output, model_config(args, args.model), beam_args)
    return 0


def cmd_decode(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.decode import decode

    decode(args.model, args.input, args.output, beam_args)
    return 0


def cmd_validate(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.cli import EXIT_VALIDATION
    from pipeline.score import validate_batch

    config = model_config(args, args.model)
    report = validate_batch(args.model, args.input, args.output, config, beam_args)
    return EXIT_VALIDATION if report.failures(config) else 0


def cmd_run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    run_partition(args, beam_args)
    return 0


def run_partition(args: argparse.Namespace, beam_args: Sequence[str]) -> PipelineResult | None:
    """The scheduled job for one partition: train if there is no model (or --retrain), then
    validate and score. Returns the started job with --no-wait, else None."""
    from pipeline.bigquery import BigQueryOutput
    from pipeline.score import score
    from pipeline.train import train

    settings = training_config(args)  # the command line's, never the bundle's
    partition = resolve_partition(args.partition or settings.data.partition)
    query = with_partition(settings.data.bigquery_query, partition)
    input_pattern = with_partition(args.input, partition)
    model_dir = args.model or os.path.join(args.output, "model")
    scores_dir = scores_directory(args.output, partition)
    tables = None
    if args.bigquery_output:
        tables = BigQueryOutput.for_partition(args.bigquery_output, partition)
    has_model = FileSystems.exists(os.path.join(model_dir, MANIFEST_FILE))
    if args.no_wait:
        _check_can_start(args, has_model, tables)
    elif args.retrain or not has_model:
        print("no model bundle yet: training" if not has_model else "--retrain: training")
        train_input = with_partition(args.train_input, partition) or input_pattern
        train(train_input, model_dir, _for_run(settings, partition, query), beam_args)
    else:
        print(f"using the model bundle in {model_dir}")
    config = _for_run(model_config(args, model_dir), partition, query)
    if args.no_wait:
        return start_scoring(model_dir, input_pattern, scores_dir, config, tables, beam_args)
    if tables is not None:
        _validate_before_loading(model_dir, input_pattern, scores_dir, config, beam_args)
    score(model_dir, input_pattern, scores_dir, config, beam_args, tables=tables)
    return None


def resolve_partition(value: str | None, today: dt.date | None = None) -> str | None:
    """A partition from --partition or data.partition. `today` and `yesterday` become UTC
    dates, so a fixed schedule (Cloud Scheduler) can name the day it runs for; any other
    value must be safe as a folder name."""
    if value is None:
        return None
    if value in _RELATIVE_DAYS:
        day = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(_RELATIVE_DAYS[value])
        return day.isoformat()
    if not _PARTITION_NAME.fullmatch(value):
        raise ConfigError(
            "a partition is a date or a name of letters, digits, '_', '.' and '-' (it becomes "
            f"a folder name). Received: {value!r}"
        )
    return value


def with_partition(template: str | None, partition: str | None) -> str | None:
    """Fill {partition} in an input pattern or query (plain replacement: the braces of SQL
    and of globs are left alone)."""
    if template is None or PLACEHOLDER not in template:
        return template
    if partition is None:
        raise ConfigError(f"{template!r} uses {PLACEHOLDER}: give --partition or data.partition")
    return template.replace(PLACEHOLDER, partition)


def scores_directory(output: str, partition: str | None) -> str:
    """OUTPUT/scores, or OUTPUT/scores/partition=VALUE (Hive-style: BigQuery external tables
    and Spark read the partition from the path)."""
    scores = os.path.join(output, "scores")
    return os.path.join(scores, f"partition={partition}") if partition else scores


def start_scoring(
    model_dir: str,
    input_pattern: str,
    out_dir: str,
    config: VaepipeConfig,
    tables: BigQueryOutput,
    beam_args: Sequence[str],
) -> PipelineResult:
    """Build the scoring job and start it without waiting; returns the started job.

    Nothing runs after the job (a Flex Template launcher submits it only once this program
    has exited), so nothing is staged: the tables are BigQuery partitions that each load job
    replaces whole, the job writes its validation report straight into `out_dir`, and the
    resolved config is written before the job starts.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.bundle import load_bundle
    from pipeline.score import CONFIG, build_score_pipeline, check_inputs

    if _fail_policies(config):
        raise ConfigError(
            f"--no-wait cannot stop a job on a validation failure ({_fail_policies(config)} = "
            "fail): run without --no-wait, or `vaepipe validate` first"
        )
    bundle = load_bundle(model_dir, load_model=False)
    check_inputs(bundle, input_pattern, config)
    save_config(config, os.path.join(out_dir, CONFIG))
    root = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    build_score_pipeline(root, input_pattern, bundle, config, out_dir, tables)
    result = root.run()
    print(f"started scoring {input_pattern} into {tables.dataset_uri} ({tables.decorator})")
    return result


def _check_can_start(
    args: argparse.Namespace, has_model: bool, tables: BigQueryOutput | None
) -> None:
    if args.retrain or not has_model:
        raise ConfigError(
            "--no-wait starts one scoring job and cannot train (training waits for the data "
            "job, then fits in this process): run `vaepipe train` first"
        )
    if tables is None:
        raise ConfigError(
            "--no-wait needs --bigquery-output: Parquet outputs are published by this process "
            "after the job ends, BigQuery partitions are replaced by the job itself"
        )


def _validate_before_loading(
    model_dir: str, input_pattern: str, scores_dir: str, config, beam_args: Sequence[str]
) -> None:
    """BigQuery loads cannot be taken back: with a fail policy, validate the batch first."""
    from pipeline.score import ValidationFailed, validate_batch

    if not _fail_policies(config):
        return
    out = os.path.join(scores_dir, f".validate-{uuid.uuid4().hex[:12]}")
    report = validate_batch(model_dir, input_pattern, out, config, beam_args)
    FileSystems.delete([out])
    failures = report.failures(config)
    if failures:
        raise ValidationFailed(
            "the batch failed validation; nothing was loaded:\n  " + "\n  ".join(failures)
        )


def _fail_policies(config: VaepipeConfig) -> list[str]:
    names = ("on_anomaly", "on_drift")
    return [f"schema.{n}" for n in names if getattr(config.schema, n, "warn") == "fail"]


def _for_run(config: VaepipeConfig, partition: str | None, query: str | None) -> VaepipeConfig:
    data = dataclasses.replace(config.data, partition=partition, bigquery_query=query)
    return dataclasses.replace(config, data=data)


def _local_configs(paths: Sequence[str]) -> list[str]:
    """Config files as local paths: a gs:// one (a Flex Template parameter) is copied first."""
    from pipeline.io import read_bytes

    local = []
    for path in paths:
        if "://" not in str(path):
            local.append(path)
            continue
        handle, name = tempfile.mkstemp(prefix="vaepipe-config-", suffix=".yaml")
        with os.fdopen(handle, "wb") as out:
            out.write(read_bytes(path))
        local.append(name)
    return local


def cmd_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Synthetic data -> train -> score -> decode, with a summary a newcomer can check."""
    if args.kind == "image":
        return _image_demo(args, beam_args)
    from pipeline.decode import decode
    from pipeline.demo_data import synthetic_table
    from pipeline.score import score
    from pipeline.train import train

    rows = DEMO_ROWS if args.rows is None else args.rows
    out = os.path.abspath(args.output)
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    train_csv, batch_csv = os.path.join(data_dir, "train.csv"), os.path.join(data_dir, "batch.csv")
    synthetic_table(rows, anomaly_rate=0.01, seed=1).to_csv(train_csv, index=False)
    synthetic_table(max(rows // 4, 1000), anomaly_rate=0.05, seed=2).to_csv(batch_csv, index=False)
    print(f"demo data: {train_csv} (training) and {batch_csv} (a batch to score)")
    config = load_config(args.config or [builtin_config_path("tabular")], DEMO_CONFIG + args.set)
    model_dir, scores_dir = os.path.join(out, "model"), os.path.join(out, "scores")
    train(train_csv, model_dir, config, beam_args)
    score(model_dir, batch_csv, scores_dir, config, beam_args)
    decode(model_dir, os.path.join(scores_dir, "codes"), os.path.join(out, "decoded"), beam_args)
    _demo_summary(scores_dir, out)
    return 0


def _demo_summary(scores_dir: str, out: str) -> None:
    import pandas as pd

    flags = pd.read_parquet(os.path.join(scores_dir, "flags"))
    labels = flags["label"].astype(int)
    normal_rate = flags.loc[labels == 0, "is_anomaly"].mean()
    caught = flags.loc[labels == 1, "is_anomaly"].mean()
    print(
        f"\ndemo summary: {len(flags)} records scored; flagged {normal_rate:.1%} of normal "
        f"records (target 1.0%) and {caught:.1%} of injected anomalies"
    )
    top = flags.sort_values("score", ascending=False).head(3)
    print(top[["record_id", "score", "p_value", "top_feature_1", "label"]].to_string(index=False))
    print(
        f"\noutputs in {out}: model/ (bundle), scores/flags, scores/codes, scores/dead_letter, "
        "decoded/ (records rebuilt from the codes)"
    )


def _image_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """The same demo on an image folder: the image path (folder input, PNG decoding) is as
    much of vaepipe as the tabular one, and a newcomer should be able to see it work."""
    from pipeline.decode import decode
    from pipeline.score import score
    from pipeline.train import train

    count = DEMO_IMAGES if args.rows is None else args.rows
    if count < MIN_DEMO_IMAGES:
        raise ValueError(f"--rows for --kind image must be at least {MIN_DEMO_IMAGES} images")
    out = os.path.abspath(args.output)
    train_dir, batch_dir = write_demo_images(os.path.join(out, "data", "images"), count)
    print(f"demo data: {train_dir} (training) and {batch_dir} (a folder to score)")
    config = load_config(
        args.config or [builtin_config_path("image")], DEMO_IMAGE_CONFIG + args.set
    )
    model_dir, scores_dir = os.path.join(out, "model"), os.path.join(out, "scores")
    train(train_dir, model_dir, config, beam_args)
    score(model_dir, batch_dir, scores_dir, config, beam_args)
    decode(model_dir, os.path.join(scores_dir, "codes"), os.path.join(out, "decoded"), beam_args)
    _image_demo_summary(scores_dir, out, config.scoring.target_fpr)
    return 0


def write_demo_images(root: str, count: int) -> tuple[str, str]:
    """`count` strokes to train on, and a batch of fresh strokes with a few rings (about one in
    eleven) to score. The folders are emptied first so a rerun with fewer images leaves no
    stale files behind. Returns (train folder, batch folder)."""
    import shutil
    from pathlib import Path

    from pipeline.demo_images import rings, strokes, write_pngs

    train_dir, batch_dir = os.path.join(root, "train"), os.path.join(root, "batch")
    for folder in (train_dir, batch_dir):
        shutil.rmtree(folder, ignore_errors=True)
    write_pngs(Path(train_dir), strokes(count, seed=1), NORMAL)
    write_pngs(Path(batch_dir, "normal"), strokes(max(count // 3, 100), seed=2), NORMAL)
    write_pngs(Path(batch_dir, "rings"), rings(max(count // 30, 10), seed=3), RING)
    return train_dir, batch_dir


def _image_demo_summary(scores_dir: str, out: str, target_fpr: float) -> None:
    """Flag rates by kind, read back from the outputs (the files are what a user would use)."""
    import json

    import pandas as pd

    from pipeline.score import SUMMARY

    with open(os.path.join(scores_dir, SUMMARY)) as handle:
        counts = json.load(handle)
    flags = pd.read_parquet(os.path.join(scores_dir, "flags"))
    flags["file"] = flags["record_id"].map(os.path.basename)
    ring = flags["file"].str.startswith(f"{RING}-")
    print(
        f"\ndemo summary: {counts['rows_read']} images read = {counts['rows_scored']} scored + "
        f"{counts['rows_dead_lettered']} dead-lettered; flagged "
        f"{flags.loc[~ring, 'is_anomaly'].mean():.1%} of {int((~ring).sum())} held-out normal "
        f"images (target {target_fpr:.1%}) and {flags.loc[ring, 'is_anomaly'].mean():.1%} of "
        f"{int(ring.sum())} anomalies (rings)"
    )
    top = flags.sort_values("score", ascending=False).head(3)
    print(top[["file", "score", "p_value", "top_feature_1"]].to_string(index=False))
    print(
        f"\noutputs in {out}: model/ (bundle), scores/flags, scores/codes, scores/dead_letter, "
        "decoded/images (PNG files rebuilt from the codes), decoded/index (record_id -> PNG)"
    )
