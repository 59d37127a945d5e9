"""The scheduled job (`vaepipe run`): one partition a run; train when there is no model (or
on request), then validate and score. BigQuery in and out, or Parquet under OUTPUT/scores."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from configs import ConfigError, VaepipeConfig, save_config
from pipeline.artifacts.bundle import MANIFEST_FILE, load_bundle
from pipeline.jobs.score import CONFIG, build_score_pipeline, score
from pipeline.jobs.settings import check_model_settings, model_config, training_config
from pipeline.jobs.train import train
from pipeline.jobs.validate import (
    ValidationFailed,
    check_inputs,
    check_output_dir,
    check_training_inputs,
    validate_batch,
)
from pipeline.sinks.bigquery import BigQueryOutput

PLACEHOLDER = "{partition}"
_RELATIVE_DAYS = {"today": 0, "yesterday": 1}
_PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class RunRequest:
    """What `vaepipe run` was asked to do (the command line's flags)."""

    input: str
    output: str
    train_input: str | None = None
    model: str | None = None
    retrain: bool = False
    partition: str | None = None
    bigquery_output: str | None = None
    no_wait: bool = False
    config: Sequence[str] = field(default_factory=list)
    set: Sequence[str] = field(default_factory=list)


def run_partition(args: RunRequest, beam_args: Sequence[str]) -> PipelineResult | None:
    """The scheduled job for one partition: train if there is no model (or --retrain), then
    validate and score. Returns the started job with --no-wait, else None."""
    settings = training_config(args.config, args.set)  # the command line's, never the bundle's
    check_model_settings(settings)
    partition = resolve_partition(args.partition or settings.data.partition)
    query = with_partition(settings.data.bigquery_query, partition)
    input_pattern = with_partition(args.input, partition)
    model_dir = args.model or os.path.join(args.output, "model")
    scores_dir = scores_directory(args.output, partition)
    tables = None
    if args.bigquery_output:
        tables = BigQueryOutput.for_partition(args.bigquery_output, partition)
    has_model = FileSystems.exists(os.path.join(model_dir, MANIFEST_FILE))
    check_output_dir(scores_dir, model_dir)  # OUTPUT/model is the default: scores sit beside it
    if args.no_wait:
        _check_can_start(args, has_model, tables)
    elif args.retrain or not has_model:
        print("no model bundle yet: training" if not has_model else "--retrain: training")
        train_input = with_partition(args.train_input, partition) or input_pattern
        check_training_inputs(train_input, settings)
        train(train_input, model_dir, _for_run(settings, partition, query), beam_args)
    else:
        print(f"using the model bundle in {model_dir}")
    config = _for_run(model_config(model_dir, args.config, args.set), partition, query)
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


def _check_can_start(args: RunRequest, has_model: bool, tables: BigQueryOutput | None) -> None:
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
