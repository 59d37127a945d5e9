"""The decoding job (Beam): latent codes (Parquet) -> records of the model's data kind.

Tables decode to Parquet records in the original columns and units (bundles with a
`record_columns.json` part: the input's id column name, column order and types, integers
rounded); image models to PNG files, `OUT/images/<name>-<hash>.png`, with an index
`OUT/index/*.parquet` of `record_id` -> `image` (the PNG's path). The kind
(`pipeline.kinds`) says which.

Before the job the driver checks the codes: they carry vaepipe's code metadata (so another
Parquet output, such as flags/, is refused by name), their width is the model's latent size,
and the model fingerprint they carry is this model's (codes of another model would decode to
plausible-looking wrong records).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from configs import VaepipeConfig
from pipeline import kinds
from pipeline.artifacts.bundle import Bundle, load_bundle
from pipeline.core import metrics
from pipeline.core.errors import BundleError
from pipeline.jobs.runner import run_pipeline
from pipeline.jobs.validate import DRY_RUN_NOTE, check_output_dir, is_dry_run
from pipeline.scoring import outputs
from pipeline.sinks.parquet import WriteTables
from pipeline.sources.files import match_inputs


class _DecodeDoFn(beam.DoFn):
    """Codes table -> the kind's decoded table (the bundle is loaded once per worker)."""

    def __init__(self, model_dir: str, output_dir: str, config: VaepipeConfig | None = None):
        self._model_dir = model_dir
        self._output_dir = output_dir
        self._config = config
        self._rows = metrics.counter(metrics.ROWS_DECODED)

    def setup(self):
        self._bundle = load_bundle(self._model_dir)
        self._kind = kinds.get(self._bundle.manifest.get("data_kind", "tabular"))

    def process(self, table: pa.Table):
        values = decode_codes(self._bundle.model, table)
        ids = table.column("record_id").to_pylist()
        self._rows.inc(len(ids))
        bundle = self._bundle
        yield self._kind.decoded_table(
            bundle.encoding, ids, values, self._output_dir, self._config, columns=bundle.columns
        )


def decode_codes(model, table: pa.Table) -> np.ndarray:
    """The decoder's packed values `[n, width]` for a table of codes (dequantised first)."""
    codes = table.column("code").combine_chunks()
    meta = outputs.code_format(table.schema)
    width = codes.type.list_size
    flat = codes.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    z = outputs.dequantize(flat, np.asarray(meta["scale"]), meta["dtype"])
    return np.asarray(model.reconstruct_from_code(z))


def decode(
    model_dir: str,
    codes_dir: str,
    output_dir: str,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
    config: VaepipeConfig | None = None,
) -> int:
    """Decode every code under `codes_dir` into records under `output_dir`.

    `config`: the run's config (`jobs.settings.model_config`); its data kind must be the
    model's.
    """
    check_output_dir(output_dir, model_dir)
    bundle = load_bundle(model_dir, load_model=False)
    kind_name = bundle.manifest.get("data_kind", "tabular")
    if config is not None and config.data.kind != kind_name:
        raise BundleError(
            f"the model in {model_dir} reads {kind_name} data but the config says "
            f"data.kind {config.data.kind}"
        )
    kind = kinds.get(kind_name)
    pattern = (
        os.path.join(codes_dir, "*.parquet") if not codes_dir.endswith(".parquet") else codes_dir
    )
    paths = match_inputs(pattern)
    width = len(bundle.calibration.code_scale)
    for line in check_codes(paths[0], bundle, width):
        echo(line)
    schema = kind.decoded_schema(bundle.encoding, columns=bundle.columns)
    tables_dir = kind.decoded_tables_dir(output_dir)

    def build(root):
        _ = (
            root
            | "ReadCodes" >> beam.io.ReadFromParquetBatched(pattern)
            | "CheckWidth" >> beam.Map(_check_width, width)
            | "Decode" >> beam.ParDo(_DecodeDoFn(model_dir, output_dir, config))
            | "WriteRecords" >> WriteTables(tables_dir, schema)
        )

    counts = run_pipeline(build, beam_args, test_pipeline)
    if is_dry_run(beam_args, test_pipeline):
        echo(DRY_RUN_NOTE)
        return 0
    rows = counts.get(metrics.ROWS_DECODED, 0)
    echo(f"decoded {rows} records to {output_dir}")
    return rows


def check_codes(path: str, bundle: Bundle, width: int) -> list[str]:
    """Driver-side: the file at `path` holds codes of this model. Returns notes to print."""
    with FileSystems.open(path) as handle:
        schema = pq.read_schema(handle)
    if outputs.CODE_METADATA_KEY not in (schema.metadata or {}):
        raise BundleError(
            f"{path} is not a codes file: it carries no vaepipe code metadata (columns "
            f"{schema.names[:6]}). Give decode the codes/ folder of a `vaepipe score` run, "
            "not flags/ or dead_letter/"
        )
    meta = outputs.code_format(schema)
    found = schema.field("code").type.list_size if "code" in schema.names else None
    if found != width:
        raise BundleError(
            f"codes in {path} have {found} dimensions but the model in {bundle.directory} "
            f"has a latent code of {width}: they were written by another model"
        )
    written_by = meta.get(outputs.MODEL_FINGERPRINT)
    this_model = outputs.model_fingerprint(bundle)
    if written_by is None:
        return [f"note: {path} names no model (written before codes carried one): not checked"]
    if written_by != this_model:
        raise BundleError(
            f"the codes in {path} were written by another model (model.keras SHA-256 "
            f"{written_by[:16]}...) than the one in {bundle.directory} ({str(this_model)[:16]}"
            "...): decode them with the model that scored them"
        )
    return []


def _check_width(table: pa.Table, width: int) -> pa.Table:
    found = table.schema.field("code").type.list_size
    if found != width:
        raise BundleError(f"codes have {found} dimensions but the model's latent code has {width}")
    return table
