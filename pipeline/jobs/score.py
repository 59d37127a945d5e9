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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import RunInference

from configs import VaepipeConfig, save_config
from pipeline import kinds
from pipeline.artifacts.bundle import Bundle, load_bundle
from pipeline.core import metrics
from pipeline.core.fs import exists, read_text, write_text
from pipeline.core.records import DEAD
from pipeline.features.encode import encode_chunk
from pipeline.features.validation import (
    VALIDATION_REPORT,
    ValidateBatch,
    ValidationReport,
    flag_rate_alarm,
    read_report,
)
from pipeline.jobs.reports import leave_report
from pipeline.jobs.runner import run_pipeline
from pipeline.jobs.validate import (
    DRY_RUN_NOTE,
    ValidationFailed,
    check_inputs,
    check_output_dir,
    is_dry_run,
)
from pipeline.scoring.handler import BundleModelHandler
from pipeline.scoring.outputs import CODES, FLAGS, OutputContext, ToOutputs
from pipeline.sinks.bigquery import BigQueryOutput
from pipeline.sinks.parquet import WriteDeadLetters, WriteTables, dead_letter_schema
from pipeline.sinks.publish import (
    STAGING_PREFIX,
    OutputLease,
    new_run_id,
    new_staging,
    publish,
    remove_stale_staging,
)

DEAD_LETTER = "dead_letter"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
DUPLICATES = "duplicate_ids.json"  # written by the job into staging, read into the summary
DUPLICATE_EXAMPLES = 5  # record ids seen more than once, shown in the summary and warning

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
    run_id: str | None = None
    threshold: float | None = None
    target_fpr: float | None = None
    threshold_note: str = ""
    # Record ids scored more than once: {"ids": how many ids, "extra_rows": rows beyond the
    # first of each, "examples": a few ids}.
    duplicate_record_ids: dict = dataclasses.field(default_factory=dict)
    dry_run: bool = False


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
    # Chunks of data.chunk_rows rows share model batches of scoring.batch_size rows.
    per_call = max(1, scoring.batch_size // config.data.chunk_rows)
    handler = BundleModelHandler(
        bundle.directory, scoring.batch_size, scoring.mc_samples, chunks_per_call=per_call
    )
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
    _ = outputs[FLAGS] | "DuplicateIds" >> CountDuplicateIds(os.path.join(staging, DUPLICATES))
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

    The driver reads the bundle's metadata only; the model is loaded by the workers. The job
    holds the output folder's lease from before it clears stale staging folders until it has
    published (`pipeline.sinks.publish`).
    """
    check_output_dir(output_dir, model_dir)
    bundle = load_bundle(model_dir, load_model=False)
    check_inputs(bundle, input_pattern, config)
    ctx = OutputContext.from_bundle(bundle, config)
    if is_dry_run(beam_args, test_pipeline):
        return _dry_run(input_pattern, output_dir, bundle, config, beam_args, tables, echo)
    run_id = new_run_id()
    with OutputLease(output_dir, run_id):
        for stale in remove_stale_staging(output_dir):
            echo(f"removed {stale}, left by an interrupted run")
        staging = new_staging(output_dir, run_id)
        echo(f"scoring {input_pattern} with {model_dir}")
        if ctx.threshold != bundle.calibration.threshold:
            echo(ctx.threshold_note)
        try:
            result, report = _run_and_publish(
                input_pattern, output_dir, bundle, config, staging, ctx, beam_args,
                test_pipeline, tables,
            )  # fmt: skip
        except BaseException:
            if exists(staging):  # this job's own: no other job runs here while it holds the lease
                FileSystems.delete([staging])
            raise
        if tables is None:  # the report reads the published Parquet outputs
            leave_report(model_dir, output_dir, echo)
    _echo_summary(result, report, echo)
    return result


def _run_and_publish(
    input_pattern, output_dir, bundle, config, staging, ctx, beam_args, test_pipeline, tables
) -> tuple[ScoreResult, ValidationReport]:
    counts = run_pipeline(
        lambda root: build_score_pipeline(root, input_pattern, bundle, config, staging, tables),
        beam_args,
        test_pipeline,
    )
    report = read_report(staging)
    failures = report.failures(config)
    if failures:
        raise ValidationFailed(
            "the batch failed validation (schema.on_anomaly / schema.on_drift = fail); "
            "nothing was written:\n  " + "\n  ".join(failures)
        )
    run_id = os.path.basename(staging)[len(STAGING_PREFIX) :]
    duplicates = _read_duplicates(staging)
    result = _result(output_dir, counts, report, bundle, config, ctx, run_id, duplicates)
    write_text(os.path.join(staging, SUMMARY), json.dumps(result.__dict__, indent=1))
    save_config(config, os.path.join(staging, CONFIG))
    tabled = (FLAGS, CODES, DEAD_LETTER) if tables is None else ()  # BigQuery loads replace own
    publish(staging, output_dir, (*tabled, VALIDATION_REPORT, SUMMARY, CONFIG), last=SUMMARY)
    return result, report


def _dry_run(input_pattern, output_dir, bundle, config, beam_args, tables, echo) -> ScoreResult:
    """Translate the job (Dataflow --dry_run) with a staging path that is never written, and
    publish nothing: no job ran, so there is nothing to publish and no lease to hold."""
    staging = new_staging(output_dir)
    echo(f"translating the scoring job for {input_pattern} (dry run)")
    run_pipeline(
        lambda root: build_score_pipeline(root, input_pattern, bundle, config, staging, tables),
        beam_args,
    )
    if exists(staging):  # a sink that prepared its folder at translation
        FileSystems.delete([staging])
    echo(DRY_RUN_NOTE)
    return ScoreResult(output_dir, 0, 0, 0, 0, [], [], None, dry_run=True)


def _result(
    output_dir, counts: dict, report: ValidationReport, bundle, config, ctx, run_id, duplicates
) -> ScoreResult:
    scored, flagged = counts.get(metrics.ROWS_SCORED, 0), counts.get(metrics.ROWS_FLAGGED, 0)
    calibration_flagged = int(np.sum(bundle.calibration_scores > ctx.threshold))
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
            calibration_flagged,
            len(bundle.calibration_scores),
            config.scoring.flag_rate_alarm_p,
        ),
        run_id=run_id,
        threshold=float(ctx.threshold),
        target_fpr=config.scoring.target_fpr,
        threshold_note=ctx.threshold_note,
        duplicate_record_ids=duplicates,
    )


# ------------------------------------------------------------------- duplicate record ids


class CountDuplicateIds(beam.PTransform):
    """Flags tables -> one small JSON file at `path`: how many record ids were scored more
    than once, the rows beyond the first of each, and a few of them (sorted, so the same
    batch gives the same examples).

    Ids travel as Arrow arrays, never one Beam element per record: each table's ids are split
    by hash into `buckets` (an id always lands in the same bucket), a bucket's arrays are
    grouped and counted in C (`pyarrow.compute.value_counts`), and the per-bucket counts are
    summed. A bucket holds about 1/`buckets` of the batch's ids on one worker.
    """

    def __init__(self, path: str, examples: int = DUPLICATE_EXAMPLES, buckets: int = 64):
        super().__init__()
        self._path = path
        self._examples = examples
        self._buckets = buckets

    def expand(self, flags):
        return (
            flags
            | "IdBuckets" >> beam.FlatMap(_id_buckets, self._buckets)
            | "GroupBuckets" >> beam.GroupByKey()
            | "CountInBucket" >> beam.Map(_bucket_duplicates, self._examples)
            | "Summarise" >> beam.CombineGlobally(_DuplicateSummary(self._examples))
            | "WriteDuplicates" >> beam.Map(_write_json_file, self._path)
        )


def _id_buckets(table: pa.Table, buckets: int) -> Iterator[tuple[int, pa.Array]]:
    """(bucket, the table's ids in it) for each bucket its ids fall in."""
    ids = table.column("record_id").combine_chunks()
    if len(ids) == 0:
        return
    hashes = pd.util.hash_array(ids.to_numpy(zero_copy_only=False)) % np.uint64(buckets)
    order = np.argsort(hashes, kind="stable")
    bounds = np.searchsorted(hashes[order], np.arange(buckets + 1, dtype=np.uint64))
    for bucket in range(buckets):
        a, b = int(bounds[bucket]), int(bounds[bucket + 1])
        if b > a:
            yield bucket, ids.take(pa.array(order[a:b]))


def _bucket_duplicates(item: tuple[int, Iterable[pa.Array]], examples: int) -> tuple:
    """(ids seen more than once, rows beyond the first of each, the first few such ids)."""
    _, parts = item
    counts = pc.value_counts(pa.chunked_array(list(parts), pa.string()))
    seen = counts.field("counts").to_numpy()
    twice = seen > 1
    ids = counts.field("values").filter(pa.array(twice)).to_pylist()
    return int(twice.sum()), int(seen[twice].sum() - twice.sum()), sorted(ids)[:examples]


def _write_json_file(data: dict, path: str) -> None:
    write_text(path, json.dumps(data))


class _DuplicateSummary(beam.CombineFn):
    """Per-bucket (ids, extra rows, examples) -> {"ids", "extra_rows", "examples"}."""

    def __init__(self, examples: int):
        self._examples = examples

    def create_accumulator(self):
        return 0, 0, []

    def add_input(self, acc, part):
        return self.merge_accumulators([acc, part])

    def merge_accumulators(self, accs):
        accs = list(accs)
        examples = sorted(e for acc in accs for e in acc[2])[: self._examples]
        return sum(a[0] for a in accs), sum(a[1] for a in accs), examples

    def extract_output(self, acc):
        return {"ids": acc[0], "extra_rows": acc[1], "examples": acc[2]}


def _read_duplicates(staging: str) -> dict:
    path = os.path.join(staging, DUPLICATES)
    return json.loads(read_text(path)) if exists(path) else {}


def _echo_summary(
    result: ScoreResult, report: ValidationReport, echo: Callable[[str], None]
) -> None:
    for line in report.warnings():
        echo(f"WARNING {line}")
    if result.flag_rate_alarm:
        echo(f"WARNING {result.flag_rate_alarm}")
    duplicates = result.duplicate_record_ids
    if duplicates.get("ids"):
        echo(
            f"WARNING {duplicates['ids']} record ids occur more than once in the batch "
            f"({duplicates['extra_rows']} extra rows, e.g. {duplicates['examples']}): each "
            "copy was scored; check data.id_column (summary.json: duplicate_record_ids)"
        )
    balance = (
        "OK" if result.rows_read == result.rows_scored + result.rows_dead_lettered else "MISMATCH"
    )
    echo(
        f"rows read {result.rows_read} = scored {result.rows_scored} + dead-lettered "
        f"{result.rows_dead_lettered} [{balance}]; flagged {result.rows_flagged}"
    )
    echo(f"outputs: {result.output_dir}/{{{FLAGS},{CODES},{DEAD_LETTER}}}")
