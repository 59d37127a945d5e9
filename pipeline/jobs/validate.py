"""The validation job (Beam): a batch's TFDV statistics, schema anomalies, drift against the
training statistics and dead letters, without scoring."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from configs import ConfigError, VaepipeConfig
from configs.schema import DataConfig
from pipeline import kinds
from pipeline.artifacts.bundle import Bundle, load_bundle
from pipeline.core.errors import BundleError
from pipeline.core.fs import is_file, same_or_nested
from pipeline.features.validation import ValidateBatch, ValidationReport, read_report
from pipeline.jobs.runner import run_pipeline
from pipeline.sinks.parquet import WriteDeadLetters
from pipeline.sources.files import input_columns, input_format, match_inputs
from pipeline.sources.images import image_pattern

DEAD_LETTER = "dead_letter"


class ValidationFailed(RuntimeError):
    """The batch violates the model's schema and `schema.on_anomaly` is `fail`."""


def build_validate_pipeline(
    root: beam.Pipeline, input_pattern: str, bundle: Bundle, config: VaepipeConfig, out_dir: str
) -> None:
    """Validation only: statistics, schema anomalies and dead letters of a batch."""
    kind = kinds.get(config.data.kind)
    typed, dead = kind.read_typed(root, input_pattern, bundle.encoding, config)
    # A user who runs `validate` asks for a full check: every row, whatever the sample rate
    # `score` uses.
    validate_all = ValidateBatch(bundle, config, out_dir, write_statistics=True, sample_rate=1.0)
    _ = typed | "ValidateBatch" >> validate_all
    _ = (
        tuple(dead)
        | "AllDeadLetters" >> beam.Flatten()
        | ("WriteDeadLetters" >> WriteDeadLetters(os.path.join(out_dir, DEAD_LETTER)))
    )


def validate_batch(
    model_dir: str,
    input_pattern: str,
    output_dir: str | None,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> ValidationReport:
    """Validate a batch against the model's schema and training statistics; echo the result."""
    if output_dir is not None:
        check_output_dir(output_dir, model_dir)
    bundle = load_bundle(model_dir, load_model=False)
    check_inputs(bundle, input_pattern, config)
    # Without --output the report goes to a local temporary folder (on Dataflow, where
    # workers write it, give --output on shared storage).
    out_dir = output_dir or tempfile.mkdtemp(prefix="vaepipe-validate-")
    run_pipeline(
        lambda root: build_validate_pipeline(root, input_pattern, bundle, config, out_dir),
        beam_args,
    )
    if is_dry_run(beam_args):
        echo(DRY_RUN_NOTE)
        return ValidationReport()
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


def check_inputs(
    bundle: Bundle,
    input_pattern: str,
    config: VaepipeConfig,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Driver-side: the config's data kind is the model's, and its inputs fit the model
    (the kind's checks, then the columns the config names; a one-column header that holds
    another delimiter is named as the likely cause of missing columns). An excluded column a
    batch lacks is noted, not refused: labels excluded in training are often absent later."""
    kind = bundle.manifest.get("data_kind", "tabular")
    if config.data.kind != kind:
        raise BundleError(
            f"the model in {bundle.directory} reads {kind} data but the config says "
            f"data.kind {config.data.kind}"
        )
    try:
        paths = kinds.get(kind).check_inputs(bundle, input_pattern, config)
    except BundleError as err:
        hint = delimiter_hint(match_inputs(input_pattern, limit=10), config.data)
        if hint:
            raise BundleError(f"{err}. {hint}") from err
        raise
    for line in check_named_columns(paths, config.data, absent_excluded_ok=True):
        echo(f"note: {line}")
    return paths


# ------------------------------------------------------------ driver-side checks of inputs

# Delimiters a header of one column most likely holds when data.csv_delimiter is not set.
_OTHER_DELIMITERS = (";", "\t", "|")


def check_training_inputs(input_pattern: str, config: VaepipeConfig) -> list[str]:
    """Driver-side, before the training job: the pattern matches files, and the table
    headers hold the id column and the excluded columns the config names, in the delimiter
    the config gives. Returns the matched paths (images: one, the job lists the rest)."""
    if input_pattern.startswith("bq://"):
        return [input_pattern]  # columns are known once rows arrive
    if config.data.kind == "image":  # a folder of images: the job lists it; one file will do
        return match_inputs(image_pattern(input_pattern), limit=1)
    paths = match_inputs(input_pattern)
    hint = delimiter_hint(paths[:10], config.data)
    if hint:
        raise ConfigError(hint)
    check_named_columns(paths, config.data)
    return paths


def check_named_columns(
    paths: Sequence[str], data: DataConfig, absent_excluded_ok: bool = False
) -> list[str]:
    """Every table file has the id column and the excluded columns the config names (with
    `absent_excluded_ok`, missing excluded columns are returned as notes instead)."""
    notes: list[str] = []
    if not (data.id_column or data.exclude_columns):
        return notes
    for path in paths:
        columns = _table_columns(path, data)
        if not columns:
            continue
        if data.id_column and data.id_column not in columns:
            raise ConfigError(
                f"data.id_column {data.id_column!r} is not a column of {path} (its columns: "
                f"{columns}){_hint_suffix(path, columns, data)}"
            )
        absent = [c for c in data.exclude_columns if c not in columns]
        if absent and absent_excluded_ok:
            notes.append(f"{path} has no column {absent} (data.exclude_columns): left empty")
        elif absent:
            raise ConfigError(
                f"data.exclude_columns names columns that {path} does not have: {absent} (its "
                f"columns: {columns}){_hint_suffix(path, columns, data)}"
            )
    return notes


def delimiter_hint(paths: Sequence[str], data: DataConfig) -> str:
    """A hint naming data.csv_delimiter when a file's header reads as one column that holds
    another common delimiter (a `;`, tab or `|` separated file read with `,`); else ""."""
    for path in paths:
        columns = _table_columns(path, data)
        if columns and len(columns) == 1:
            hint = _hint_for(path, columns[0], data)
            if hint:
                return hint
    return ""


def _hint_suffix(path: str, columns: list[str], data: DataConfig) -> str:
    hint = _hint_for(path, columns[0], data) if len(columns) == 1 else ""
    return f". {hint}" if hint else ""


def _hint_for(path: str, header: str, data: DataConfig) -> str:
    for delimiter in _OTHER_DELIMITERS:
        if delimiter != data.csv_delimiter and delimiter in header:
            # Spelled for a shell and YAML: a double-quoted YAML string ("\t" is a tab; a bare
            # | would start a YAML block).
            spelled = "\\t" if delimiter == "\t" else delimiter
            return (
                f"{path} reads as one column {header!r} with data.csv_delimiter "
                f"{data.csv_delimiter!r}, and that header holds '{spelled}': give "
                f"--set 'data.csv_delimiter=\"{spelled}\"'"
            )
    return ""


def _table_columns(path: str, data: DataConfig) -> list[str]:
    """A table file's column names from its header or metadata; [] where a file has none to
    read here (tf.Example records, an unknown extension, BigQuery)."""
    try:
        input_format(path, data)
    except ValueError:
        return []
    return input_columns(path, data)


def check_output_dir(output_dir: str, model_dir: str | None = None) -> None:
    """The output folder is a folder (not an existing file) and apart from the model bundle:
    a job writes and removes files in it, which would alter the bundle (then refused as
    changed) if one held the other."""
    if is_file(output_dir):
        raise ConfigError(
            f"--output {output_dir} is an existing file: it must be a folder (new or existing); "
            "give another path"
        )
    if model_dir is not None and same_or_nested(output_dir, model_dir):
        raise ConfigError(
            f"--output {output_dir} and the model folder {model_dir} overlap (the same folder, "
            "or one inside the other): writing outputs there would change the model bundle. "
            "Give an output folder outside the model"
        )


# ------------------------------------------------------------------------------ dry runs

DRY_RUN_NOTE = (
    "dry run (--dry_run): the job was translated for the runner and nothing ran; "
    "no outputs were written"
)


def is_dry_run(beam_args: Sequence[str], test_pipeline=None) -> bool:
    """Whether the runner only translates the job (Dataflow's --dry_run): then there are no
    outputs to read or publish."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

    options = test_pipeline.options if test_pipeline is not None else None
    options = options or PipelineOptions(list(beam_args))
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else ""
    return bool(options.view_as(TestOptions).dry_run) and "Dataflow" in name
