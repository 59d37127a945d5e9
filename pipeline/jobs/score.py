"""The scoring job (Beam): read -> type -> {validate (TFDV), encode -> RunInference ->
{flags, codes}}; every failure -> dead letters. Outputs become visible only when complete.

Images (data.kind image) are read by `pipeline.images` and need no typing stage; the rest of
the job is the same, with image patches as the top features.

Validation runs on a branch (optionally sampled), so TFDV never throttles the scoring path.
Outputs are written to a staging folder and moved into place by the driver after the job
succeeds, so an interrupted or failed job leaves no partial outputs behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
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
from pipeline.bigquery import BigQueryOutput
from pipeline.bundle import Bundle, BundleError, check_columns, load_bundle
from pipeline.images import ReadImages, image_pattern
from pipeline.inference import BundleModelHandler, ScoredChunk
from pipeline.io import (
    DEAD,
    ReadRecords,
    WriteDeadLetters,
    WriteTables,
    dead_letter_schema,
    input_columns,
    match_inputs,
    write_text,
)
from pipeline.preprocess import ApplyKindsDoFn, encode_chunk
from pipeline.validation import (
    VALIDATION_REPORT,
    ValidateBatch,
    ValidationReport,
    flag_rate_alarm,
    read_report,
)

FLAGS, CODES, DEAD_LETTER = "flags", "codes", "dead_letter"
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
    drifted_features: list
    flag_rate_alarm: str | None


class ValidationFailed(RuntimeError):
    """The batch violates the model's schema and `schema.on_anomaly` is `fail`."""


def check_inputs(bundle: Bundle, input_pattern: str, config: VaepipeConfig) -> list[str]:
    """Driver-side: every input file exists and has every column the model needs."""
    kind = bundle.manifest.get("data_kind", "tabular")
    if config.data.kind != kind:
        raise BundleError(
            f"the model in {bundle.directory} reads {kind} data but the config says "
            f"data.kind {config.data.kind}"
        )
    if kind == "image":
        return check_image_inputs(bundle, input_pattern, config)
    paths = match_inputs(input_pattern)
    data = config.data
    for path in paths:
        columns = input_columns(path, data)
        if columns:
            check_columns(bundle, [c for c in columns if c != data.id_column], path)
            if data.id_column and data.id_column not in columns:
                raise BundleError(f"input {path} has no id column {data.id_column!r}")
    return paths


def check_image_inputs(bundle: Bundle, input_pattern: str, config: VaepipeConfig) -> list[str]:
    """Driver-side, for an image model: the config reads images as the model was trained on
    them, and at least one file matches (one is listed, not the whole folder: the job's
    MatchFiles lists them)."""
    if input_pattern.startswith("bq://"):
        raise BundleError("image models read image files, not BigQuery rows")
    encoding, image = bundle.encoding, config.image
    trained = (encoding.height, encoding.width, encoding.mode)
    if (image.height, image.width, image.mode) != trained:
        raise BundleError(
            f"the config reads {image.height} x {image.width} {image.mode} images but the model "
            f"in {bundle.directory} was trained on {trained[0]} x {trained[1]} {trained[2]} "
            "images (image.height, image.width, image.mode)"
        )
    return match_inputs(image_pattern(input_pattern), limit=1)


def _read_and_type(root, input_pattern: str, bundle: Bundle, config: VaepipeConfig):
    """Read records and convert them to the model's column kinds (the shared first stages)."""
    if config.data.kind == "image":  # decoded images are already typed
        image, rows = config.image, config.data.chunk_rows
        read = root | "ReadRecords" >> ReadImages(input_pattern, image, rows)
        return read["records"], [read[DEAD]]
    exclude = tuple(config.data.exclude_columns)
    read = root | "ReadRecords" >> ReadRecords(input_pattern, config.data)
    typed = read.records | "ApplyKinds" >> beam.ParDo(
        ApplyKindsDoFn(exclude, bundle.encoding.kinds)
    ).with_outputs(DEAD, main="typed")
    return typed.typed, [read[DEAD], typed[DEAD]]


def build_validate_pipeline(
    root: beam.Pipeline, input_pattern: str, bundle: Bundle, config: VaepipeConfig, out_dir: str
) -> None:
    """Validation only: statistics, schema anomalies and dead letters of a batch."""
    typed, dead = _read_and_type(root, input_pattern, bundle, config)
    _ = typed | "ValidateBatch" >> ValidateBatch(bundle, config, out_dir, write_statistics=True)
    _ = (
        tuple(dead)
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> WriteDeadLetters(os.path.join(out_dir, DEAD_LETTER)))
    )


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
    if config.data.kind == "image":  # the run's patch size: attribution needs no retraining
        encoding = dataclasses.replace(bundle.encoding, patch_size=config.image.patch_size)
        bundle = dataclasses.replace(bundle, encoding=encoding)
    exclude = tuple(config.data.exclude_columns)
    typed, dead = _read_and_type(root, input_pattern, bundle, config)
    _ = typed | "ValidateBatch" >> ValidateBatch(bundle, config, staging)
    scored = (
        typed
        | "Encode" >> beam.Map(encode_chunk, bundle.encoding, exclude)
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
    flags_sink = WriteTables(os.path.join(staging, FLAGS), flags_schema)
    codes_sink = WriteTables(os.path.join(staging, CODES), codes_schema)
    dead_sink = WriteDeadLetters(os.path.join(staging, DEAD_LETTER))
    if tables is not None:
        flags_sink = tables.writer(FLAGS, flags_schema)
        codes_sink = tables.writer(CODES, codes_schema)
        dead_sink = tables.writer(DEAD_LETTER, dead_letter_schema())
    _ = outputs[FLAGS] | "WriteFlags" >> flags_sink
    _ = outputs[CODES] | "WriteCodes" >> codes_sink
    _ = (
        (*dead, outputs[DEAD])
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> dead_sink)
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
        self._encoding = bundle.encoding
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
        p_values = postprocess.p_values(self._scores, terms["score"])
        # Contributions per attribution unit (a column; a patch of an image), already
        # relative to the calibration baseline: hence the zero baseline passed on.
        contributions, names = self._encoding.contributions(terms["feature_nll"], self._baseline)
        flags = postprocess.flags_table(
            chunk.record_ids,
            {**terms, "feature_nll": contributions},
            p_values,
            self._threshold,
            np.zeros(len(names)),
            names,
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
    """Run the scoring job; outputs appear under `output_dir` only if it succeeds."""
    bundle = load_bundle(model_dir)
    check_inputs(bundle, input_pattern, config)
    from pipeline.io import remove_folders

    # Staging folders left by killed runs (assumes one job per output folder at a time).
    for stale in remove_folders(output_dir, ".staging-"):
        echo(f"removed {stale}, left by an interrupted run")
    staging = os.path.join(output_dir, f".staging-{uuid.uuid4().hex[:12]}")
    echo(f"scoring {input_pattern} with {model_dir}")
    metrics = run_pipeline(
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
    scored, flagged = metrics.get("rows_scored", 0), metrics.get("rows_flagged", 0)
    result = ScoreResult(
        output_dir,
        rows_read=metrics.get("rows_read", 0),
        rows_scored=scored,
        rows_dead_lettered=metrics.get("rows_dead_lettered", 0),
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
    write_text(os.path.join(staging, SUMMARY), json.dumps(result.__dict__, indent=1))
    save_config(config, os.path.join(staging, CONFIG))
    tabled = (FLAGS, CODES, DEAD_LETTER) if tables is None else ()  # BigQuery loads replace own
    publish(staging, output_dir, (*tabled, VALIDATION_REPORT, SUMMARY, CONFIG))
    _echo_summary(result, report, echo)
    return result


def publish(staging: str, output_dir: str, names: Sequence[str]) -> None:
    """Replace each output under `output_dir` by its complete staged version, then clean up.

    The summary goes first and comes back last: an output folder without one holds a publish
    that was cut short (the next run replaces every output).
    """
    if SUMMARY in names and FileSystems.exists(os.path.join(output_dir, SUMMARY)):
        FileSystems.delete([os.path.join(output_dir, SUMMARY)])
    for name in sorted(names, key=lambda name: name == SUMMARY):
        final = os.path.join(output_dir, name)
        if FileSystems.exists(final):
            FileSystems.delete([final])
        FileSystems.rename([os.path.join(staging, name)], [final])
    FileSystems.delete([staging])


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


def validate_batch(
    model_dir: str,
    input_pattern: str,
    output_dir: str | None,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> ValidationReport:
    """Validate a batch against the model's schema and training statistics; echo the result."""
    bundle = load_bundle(model_dir, load_model=False)
    check_inputs(bundle, input_pattern, config)
    # Without --output the report goes to a local temporary folder (on Dataflow, where
    # workers write it, give --output on shared storage).
    out_dir = output_dir or tempfile.mkdtemp(prefix="vaepipe-validate-")
    run_pipeline(
        lambda root: build_validate_pipeline(root, input_pattern, bundle, config, out_dir),
        beam_args,
    )
    report = read_report(out_dir)
    if output_dir is None:
        FileSystems.delete([out_dir])
    for line in report.warnings():
        echo(line)
    echo(
        f"{len(report.schema_anomalies)} schema anomalies, {len(report.drifted)} drifted "
        f"features in {input_pattern}"
    )
    return report
