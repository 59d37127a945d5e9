"""The scoring job (Beam): read -> type -> {validate (TFDV), encode -> RunInference ->
{flags, codes}}; every failure -> dead letters. Outputs become visible only when complete.

Validation runs on a branch (optionally sampled), so TFDV never throttles the scoring path.
Outputs are written to a staging folder and moved into place by the driver after the job
succeeds, so an interrupted or failed job leaves no partial outputs behind.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from configs import VaepipeConfig, save_config
from pipeline import postprocess
from pipeline.beam_runner import run_pipeline
from pipeline.bundle import Bundle, BundleError, check_columns, load_bundle
from pipeline.column_types import apply_kinds
from pipeline.inference import BundleModelHandler, ScoredChunk
from pipeline.io import (
    DEAD,
    ReadRecords,
    WriteDeadLetters,
    WriteTables,
    input_columns,
    match_inputs,
    write_bytes,
    write_text,
)
from pipeline.records import EncodedChunk, RecordChunk
from pipeline.statistics import ComputeStatistics, anomaly_lines, stats_options, validate

FLAGS, CODES, DEAD_LETTER = "flags", "codes", "dead_letter"
VALIDATION_REPORT = "validation_report.txt"
SUMMARY = "summary.json"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class ScoreResult:
    output_dir: str
    rows_read: int
    rows_scored: int
    rows_dead_lettered: int
    rows_flagged: int
    anomalies: list


class ValidationFailed(RuntimeError):
    """The batch violates the model's schema and `schema.on_anomaly` is `fail`."""


def check_inputs(bundle: Bundle, input_pattern: str, config: VaepipeConfig) -> list[str]:
    """Driver-side: every input file exists and has every column the model needs."""
    paths = match_inputs(input_pattern)
    data = config.data
    for path in paths:
        columns = input_columns(path, data)
        if columns:
            check_columns(bundle, [c for c in columns if c != data.id_column], path)
            if data.id_column and data.id_column not in columns:
                raise BundleError(f"input {path} has no id column {data.id_column!r}")
    return paths


def _read_and_type(root, input_pattern: str, bundle: Bundle, config: VaepipeConfig):
    """Read records and convert them to the model's column kinds (the shared first stages)."""
    exclude = tuple(config.data.exclude_columns)
    read = root | "ReadRecords" >> ReadRecords(input_pattern, config.data)
    typed = read.records | "ApplyKinds" >> beam.ParDo(
        _ApplyKindsDoFn(bundle.encoding.kinds, exclude)
    ).with_outputs(DEAD, main="typed")
    return typed.typed, [read[DEAD], typed[DEAD]]


def _validate_branch(typed, bundle: Bundle, config: VaepipeConfig, out_dir: str):
    """TFDV statistics of the batch (sampled by config) checked against the bundle's schema."""
    options = stats_options(
        config.schema.max_vocabulary, bundle.schema, config.schema.validation_sample_rate
    )
    stats = typed | "ValidationStatistics" >> ComputeStatistics(bundle.encoding.kinds, options)
    _ = (
        stats
        | "ValidateAgainstSchema" >> beam.Map(_validation_report, bundle.schema)
        | "WriteValidationReport"
        >> beam.Map(_write_report, os.path.join(out_dir, VALIDATION_REPORT))
    )
    return stats


def build_validate_pipeline(
    root: beam.Pipeline, input_pattern: str, bundle: Bundle, config: VaepipeConfig, out_dir: str
) -> None:
    """Validation only: statistics, schema anomalies and dead letters of a batch."""
    typed, dead = _read_and_type(root, input_pattern, bundle, config)
    stats = _validate_branch(typed, bundle, config, out_dir)
    _ = stats | "WriteStatistics" >> beam.Map(
        lambda st: write_bytes(os.path.join(out_dir, "statistics.pb"), st.SerializeToString())
    )
    _ = (
        tuple(dead)
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> WriteDeadLetters(os.path.join(out_dir, DEAD_LETTER)))
    )


def build_score_pipeline(
    root: beam.Pipeline, input_pattern: str, bundle: Bundle, config: VaepipeConfig, staging: str
) -> None:
    """Wire the scoring job onto `root`; outputs go under `staging`."""
    exclude = tuple(config.data.exclude_columns)
    typed, dead = _read_and_type(root, input_pattern, bundle, config)
    _validate_branch(typed, bundle, config, staging)
    scored = (
        typed
        | "Encode" >> beam.Map(_encode, bundle.encoding, exclude)
        | "RunInference"
        >> RunInference(
            BundleModelHandler(
                bundle.directory, config.scoring.batch_size, config.scoring.mc_samples
            )
        )
    )
    scoring = config.scoring
    flags_schema = postprocess.flags_schema(scoring.top_features, exclude)
    scale = bundle.calibration.code_scale
    codes_schema = postprocess.codes_schema(
        len(scale), scoring.code_dtype, scale if scoring.code_dtype == "int8" else []
    )
    to_outputs = _ToOutputsDoFn(bundle, config, flags_schema, codes_schema)
    outputs = scored | "ToOutputs" >> beam.ParDo(to_outputs).with_outputs(DEAD, CODES, main=FLAGS)
    _ = outputs[FLAGS] | "WriteFlags" >> WriteTables(os.path.join(staging, FLAGS), flags_schema)
    _ = outputs[CODES] | "WriteCodes" >> WriteTables(os.path.join(staging, CODES), codes_schema)
    _ = (
        (*dead, outputs[DEAD])
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> WriteDeadLetters(os.path.join(staging, DEAD_LETTER)))
    )


class _ApplyKindsDoFn(beam.DoFn):
    def __init__(self, kinds: dict, exclude: tuple):
        self._kinds = kinds
        self._exclude = exclude
        self._dead = Metrics.counter("vaepipe", "rows_dead_lettered")

    def process(self, chunk: RecordChunk) -> Iterator:
        typed, dead = apply_kinds(chunk, self._kinds, self._exclude)
        self._dead.inc(len(dead))
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        if typed is not None:
            yield typed


def _encode(chunk: RecordChunk, encoding, exclude: tuple) -> EncodedChunk:
    present = [c for c in exclude if c in chunk.frame.columns]
    return EncodedChunk(
        chunk.source,
        chunk.record_ids,
        chunk.raw,
        encoding.encode(chunk.frame),
        chunk.frame[present],
    )


class _ToOutputsDoFn(beam.DoFn):
    """ScoredChunk -> a flags table, a codes table and dead letters; counts rows scored."""

    def __init__(self, bundle: Bundle, config: VaepipeConfig, flags_schema, codes_schema):
        cal = bundle.calibration
        self._flags_schema = flags_schema
        self._codes_schema = codes_schema
        self._scores = bundle.calibration_scores
        self._threshold = cal.threshold
        self._baseline = np.asarray(cal.feature_baseline)
        self._scale = np.asarray(cal.code_scale)
        self._names = bundle.encoding.columns
        self._scoring = config.scoring
        self._scored = Metrics.counter("vaepipe", "rows_scored")
        self._flagged = Metrics.counter("vaepipe", "rows_flagged")
        self._dead = Metrics.counter("vaepipe", "rows_dead_lettered")

    def process(self, scored: ScoredChunk) -> Iterator:
        self._dead.inc(len(scored.dead))
        for letter in scored.dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        chunk, terms = scored.chunk, scored.terms
        if len(chunk) == 0:
            return
        below = np.searchsorted(self._scores, terms["score"], side="left")
        p_values = (len(self._scores) - below) / len(self._scores)
        flags = postprocess.flags_table(
            chunk.record_ids,
            terms,
            p_values,
            self._threshold,
            self._baseline,
            self._names,
            chunk.passthrough,
            self._flags_schema,
            self._scoring.top_features,
        )
        self._scored.inc(len(chunk))
        self._flagged.inc(int(np.sum(terms["score"] > self._threshold)))
        yield flags
        code = postprocess.quantize(terms["z_mean"], self._scale, self._scoring.code_dtype)
        yield beam.pvalue.TaggedOutput(
            CODES, postprocess.codes_table(chunk.record_ids, code, self._codes_schema)
        )


def _validation_report(stats, schema) -> list[str]:
    return anomaly_lines(validate(stats, schema))


def _write_report(lines: list[str], path: str) -> list[str]:
    text = "\n".join(lines) if lines else "no schema anomalies"
    write_text(path, text + "\n")
    return lines


def score(
    model_dir: str,
    input_pattern: str,
    output_dir: str,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
) -> ScoreResult:
    """Run the scoring job; outputs appear under `output_dir` only if it succeeds."""
    bundle = load_bundle(model_dir)
    check_inputs(bundle, input_pattern, config)
    staging = os.path.join(output_dir, f".staging-{uuid.uuid4().hex[:12]}")
    echo(f"scoring {input_pattern} with {model_dir}")
    metrics = run_pipeline(
        lambda root: build_score_pipeline(root, input_pattern, bundle, config, staging),
        beam_args,
        test_pipeline,
    )
    anomalies = _read_report(os.path.join(staging, VALIDATION_REPORT))
    if anomalies and config.schema.on_anomaly == "fail":
        FileSystems.delete([staging])
        raise ValidationFailed(
            "the input violates the model's schema (schema.on_anomaly=fail); nothing was "
            "written:\n  " + "\n  ".join(anomalies)
        )
    result = ScoreResult(
        output_dir,
        rows_read=metrics.get("rows_read", 0),
        rows_scored=metrics.get("rows_scored", 0),
        rows_dead_lettered=metrics.get("rows_dead_lettered", 0),
        rows_flagged=metrics.get("rows_flagged", 0),
        anomalies=anomalies,
    )
    write_text(os.path.join(staging, SUMMARY), json.dumps(result.__dict__, indent=1))
    save_config(config, os.path.join(staging, CONFIG))
    publish(staging, output_dir, (FLAGS, CODES, DEAD_LETTER, VALIDATION_REPORT, SUMMARY, CONFIG))
    _echo_summary(result, echo)
    return result


def _read_report(path: str) -> list[str]:
    from pipeline.io import read_text

    if not FileSystems.exists(path):
        return []
    lines = read_text(path).strip().splitlines()
    return [] if lines == ["no schema anomalies"] else lines


def publish(staging: str, output_dir: str, names: Sequence[str]) -> None:
    """Replace each output under `output_dir` by its complete staged version, then clean up."""
    for name in names:
        final = os.path.join(output_dir, name)
        if FileSystems.exists(final):
            FileSystems.delete([final])
        FileSystems.rename([os.path.join(staging, name)], [final])
    FileSystems.delete([staging])


def _echo_summary(result: ScoreResult, echo: Callable[[str], None]) -> None:
    for line in result.anomalies:
        echo(f"WARNING schema anomaly: {line}")
    balance = (
        "OK" if result.rows_read == result.rows_scored + result.rows_dead_lettered else "MISMATCH"
    )
    echo(
        f"rows read {result.rows_read} = scored {result.rows_scored} + dead-lettered "
        f"{result.rows_dead_lettered} [{balance}]; flagged {result.rows_flagged}"
    )
    echo(f"outputs: {result.output_dir}/{{{FLAGS},{CODES},{DEAD_LETTER}}}")


def validate_batch(
    model_dir: str,
    input_pattern: str,
    output_dir: str | None,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Validate a batch against the model's schema; returns the anomaly lines (and echoes them)."""
    bundle = load_bundle(model_dir, load_model=False)
    check_inputs(bundle, input_pattern, config)
    out_dir = output_dir or os.path.join(model_dir, "_validate", uuid.uuid4().hex[:12])
    run_pipeline(
        lambda root: build_validate_pipeline(root, input_pattern, bundle, config, out_dir),
        beam_args,
    )
    anomalies = _read_report(os.path.join(out_dir, VALIDATION_REPORT))
    if output_dir is None:
        FileSystems.delete([out_dir])
    for line in anomalies:
        echo(f"schema anomaly: {line}")
    echo(f"{len(anomalies)} schema anomalies in {input_pattern}")
    return anomalies
