"""The decoding job (Beam): latent codes (Parquet) -> records of the model's data kind.

Tables decode to Parquet records in the original columns and units; image models to PNG
files, `OUT/images/<name>-<hash>.png`, with an index `OUT/index/*.parquet` of
`record_id` -> `image` (the PNG's path). The kind (`pipeline.kinds`) says which.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipeline import kinds
from pipeline.artifacts.bundle import load_bundle
from pipeline.core import metrics
from pipeline.core.errors import BundleError
from pipeline.jobs.runner import run_pipeline
from pipeline.scoring import outputs
from pipeline.sinks.parquet import WriteTables
from pipeline.sources.files import match_inputs


class _DecodeDoFn(beam.DoFn):
    """Codes table -> the kind's decoded table (the bundle is loaded once per worker)."""

    def __init__(self, model_dir: str, output_dir: str):
        self._model_dir = model_dir
        self._output_dir = output_dir
        self._rows = metrics.counter(metrics.ROWS_DECODED)

    def setup(self):
        self._bundle = load_bundle(self._model_dir)
        self._kind = kinds.get(self._bundle.manifest.get("data_kind", "tabular"))

    def process(self, table: pa.Table):
        values = decode_codes(self._bundle.model, table)
        ids = table.column("record_id").to_pylist()
        self._rows.inc(len(ids))
        yield self._kind.decoded_table(self._bundle.encoding, ids, values, self._output_dir)


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
) -> int:
    """Decode every code under `codes_dir` into records under `output_dir`."""
    bundle = load_bundle(model_dir, load_model=False)
    kind = kinds.get(bundle.manifest.get("data_kind", "tabular"))
    pattern = (
        os.path.join(codes_dir, "*.parquet") if not codes_dir.endswith(".parquet") else codes_dir
    )
    match_inputs(pattern)
    width = len(bundle.calibration.code_scale)
    schema = kind.decoded_schema(bundle.encoding)
    tables_dir = kind.decoded_tables_dir(output_dir)

    def build(root):
        _ = (
            root
            | "ReadCodes" >> beam.io.ReadFromParquetBatched(pattern)
            | "CheckWidth" >> beam.Map(_check_width, width)
            | "Decode" >> beam.ParDo(_DecodeDoFn(model_dir, output_dir))
            | "WriteRecords" >> WriteTables(tables_dir, schema)
        )

    counts = run_pipeline(build, beam_args, test_pipeline)
    rows = counts.get(metrics.ROWS_DECODED, 0)
    echo(f"decoded {rows} records to {output_dir}")
    return rows


def _check_width(table: pa.Table, width: int) -> pa.Table:
    found = table.schema.field("code").type.list_size
    if found != width:
        raise BundleError(f"codes have {found} dimensions but the model's latent code has {width}")
    return table
