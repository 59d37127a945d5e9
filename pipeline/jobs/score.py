"""The scoring job (Beam): read -> type -> {validate (TFDV), encode -> RunInference ->
{flags, codes}}; every failure -> dead letters. Outputs become visible only when complete.

The data kind (`pipeline.kinds`) reads and types the records; the rest of the job is the
same for every kind. Validation runs on a branch (optionally sampled), so TFDV never
throttles the scoring path. Outputs are written to a staging folder and moved into place by
the driver after the job succeeds, so an interrupted or failed job leaves no partial outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import RunInference

from configs import VaepipeConfig, save_config
from pipeline import kinds
from pipeline.artifacts.bundle import Bundle, load_bundle
from pipeline.core import metrics
from pipeline.core.fs import write_text
from pipeline.core.records import DEAD
from pipeline.features.encode import encode_chunk
from pipeline.features.validation import (
    VALIDATION_REPORT,
    ValidateBatch,
    ValidationReport,
    flag_rate_alarm,
    read_report,
)
from pipeline.jobs.runner import run_pipeline
from pipeline.jobs.validate import ValidationFailed, check_inputs
from pipeline.scoring.handler import BundleModelHandler
from pipeline.scoring.outputs import CODES, FLAGS, OutputContext, ToOutputs
from pipeline.sinks.bigquery import BigQueryOutput
from pipeline.sinks.parquet import WriteDeadLetters, WriteTables, dead_letter_schema
from pipeline.sinks.publish import new_staging, publish, remove_stale_staging

DEAD_LETTER = "dead_letter"
SUMMARY = "summary.json"
CONFIG = "config.yaml"

__all__ = ["CODES", "CONFIG", "DEAD_LETTER", "FLAGS", "SUMMARY", "ScoreResult", "score"]


@dataclass(frozen=True)
class ScoreResult:
    output_dir: str
    rows_read: int
    rows_scored: int
    rows_dead_lettered: int
    rows_flagged: int
    anomalies: list
    drifted_features: list
    flag_rate_alarm: str | None


def build_score_pipeline(
    root: beam.Pipeline,
    input_pattern: str,
    bundle: Bundle,
    config: VaepipeConfig,
    staging: str,
    tables: BigQueryOutput | None = None,
) -> None:
    """Wire the scoring job onto `root`; outputs go under `staging` (flags, codes and dead
    letters to BigQuery `tables` instead when given)."""
    kind = kinds.get(config.data.kind)
    bundle = dataclasses.replace(bundle, encoding=kind.for_scoring(bundle.encoding, config))
    typed, dead = kind.read_typed(root, input_pattern, bundle.encoding, config)
    _ = typed | "ValidateBatch" >> ValidateBatch(bundle, config, staging)
    scoring = config.scoring
    handler = BundleModelHandler(bundle.directory, scoring.batch_size, scoring.mc_samples)
    exclude = tuple(config.data.exclude_columns)
    ctx = OutputContext.from_bundle(bundle, config)
    outputs = (
        typed
        | "Encode" >> beam.Map(encode_chunk, bundle.encoding, exclude)
        | "RunInference" >> RunInference(handler)
        | "ToOutputs" >> ToOutputs(ctx)
    )
    flags_sink = WriteTables(os.path.join(staging, FLAGS), ctx.flags_schema)
    codes_sink = WriteTables(os.path.join(staging, CODES), ctx.codes_schema)
    dead_sink = WriteDeadLetters(os.path.join(staging, DEAD_LETTER))
    if tables is not None:
        flags_sink = tables.writer(FLAGS, ctx.flags_schema)
        codes_sink = tables.writer(CODES, ctx.codes_schema)
        dead_sink = tables.writer(DEAD_LETTER, dead_letter_schema())
    _ = outputs[FLAGS] | "WriteFlags" >> flags_sink
    _ = outputs[CODES] | "WriteCodes" >> codes_sink
    _ = (
        (*dead, outputs[DEAD])
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> dead_sink)
    )


def score(
    model_dir: str,
    input_pattern: str,
    output_dir: str,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
    tables: BigQueryOutput | None = None,
) -> ScoreResult:
    """Run the scoring job; outputs appear under `output_dir` only if it succeeds.

    The driver reads the bundle's metadata only; the model is loaded by the workers.
    """
    bundle = load_bundle(model_dir, load_model=False)
    check_inputs(bundle, input_pattern, config)
    for stale in remove_stale_staging(output_dir):
        echo(f"removed {stale}, left by an interrupted run")
    staging = new_staging(output_dir)
    echo(f"scoring {input_pattern} with {model_dir}")
    counts = run_pipeline(
        lambda root: build_score_pipeline(root, input_pattern, bundle, config, staging, tables),
        beam_args,
        test_pipeline,
    )
    report = read_report(staging)
    failures = report.failures(config)
    if failures:
        FileSystems.delete([staging])
        raise ValidationFailed(
            "the batch failed validation (schema.on_anomaly / schema.on_drift = fail); "
            "nothing was written:\n  " + "\n  ".join(failures)
        )
    result = _result(output_dir, counts, report, bundle, config)
    write_text(os.path.join(staging, SUMMARY), json.dumps(result.__dict__, indent=1))
    save_config(config, os.path.join(staging, CONFIG))
    tabled = (FLAGS, CODES, DEAD_LETTER) if tables is None else ()  # BigQuery loads replace own
    publish(staging, output_dir, (*tabled, VALIDATION_REPORT, SUMMARY, CONFIG), last=SUMMARY)
    _echo_summary(result, report, echo)
    return result


def _result(output_dir, counts: dict, report: ValidationReport, bundle, config) -> ScoreResult:
    scored, flagged = counts.get(metrics.ROWS_SCORED, 0), counts.get(metrics.ROWS_FLAGGED, 0)
    return ScoreResult(
        output_dir,
        rows_read=counts.get(metrics.ROWS_READ, 0),
        rows_scored=scored,
        rows_dead_lettered=counts.get(metrics.ROWS_DEAD_LETTERED, 0),
        rows_flagged=flagged,
        anomalies=report.schema_anomalies,
        drifted_features=[row["feature"] for row in report.drifted],
        flag_rate_alarm=flag_rate_alarm(
            flagged,
            scored,
            int(np.sum(bundle.calibration_scores > bundle.calibration.threshold)),
            len(bundle.calibration_scores),
            config.scoring.flag_rate_alarm_p,
        ),
    )


def _echo_summary(
    result: ScoreResult, report: ValidationReport, echo: Callable[[str], None]
) -> None:
    for line in report.warnings():
        echo(f"WARNING {line}")
    if result.flag_rate_alarm:
        echo(f"WARNING {result.flag_rate_alarm}")
    balance = (
        "OK" if result.rows_read == result.rows_scored + result.rows_dead_lettered else "MISMATCH"
    )
    echo(
        f"rows read {result.rows_read} = scored {result.rows_scored} + dead-lettered "
        f"{result.rows_dead_lettered} [{balance}]; flagged {result.rows_flagged}"
    )
    echo(f"outputs: {result.output_dir}/{{{FLAGS},{CODES},{DEAD_LETTER}}}")
