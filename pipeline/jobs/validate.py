"""The validation job (Beam): a batch's TFDV statistics, schema anomalies, drift against the
training statistics and dead letters, without scoring."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from configs import VaepipeConfig
from pipeline import kinds
from pipeline.artifacts.bundle import Bundle, load_bundle
from pipeline.features.validation import ValidateBatch, ValidationReport, read_report
from pipeline.jobs.runner import run_pipeline
from pipeline.sinks.parquet import WriteDeadLetters

DEAD_LETTER = "dead_letter"


class ValidationFailed(RuntimeError):
    """The batch violates the model's schema and `schema.on_anomaly` is `fail`."""


def build_validate_pipeline(
    root: beam.Pipeline, input_pattern: str, bundle: Bundle, config: VaepipeConfig, out_dir: str
) -> None:
    """Validation only: statistics, schema anomalies and dead letters of a batch."""
    kind = kinds.get(config.data.kind)
    typed, dead = kind.read_typed(root, input_pattern, bundle.encoding, config)
    _ = typed | "ValidateBatch" >> ValidateBatch(bundle, config, out_dir, write_statistics=True)
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


def check_inputs(bundle: Bundle, input_pattern: str, config: VaepipeConfig) -> list[str]:
    """Driver-side: the config's data kind is the model's, and its inputs fit the model."""
    from pipeline.core.errors import BundleError

    kind = bundle.manifest.get("data_kind", "tabular")
    if config.data.kind != kind:
        raise BundleError(
            f"the model in {bundle.directory} reads {kind} data but the config says "
            f"data.kind {config.data.kind}"
        )
    return kinds.get(kind).check_inputs(bundle, input_pattern, config)
