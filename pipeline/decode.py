"""The decoding job (Beam): latent codes (Parquet) -> records in the original columns and units."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipeline import postprocess
from pipeline.beam_runner import run_pipeline
from pipeline.bundle import BundleError, load_bundle
from pipeline.encoding import TabularEncoding
from pipeline.io import WriteTables, match_inputs


def decoded_schema(encoding: TabularEncoding) -> pa.Schema:
    fields = [("record_id", pa.string())]
    fields += [(s.name, pa.float64()) for s in encoding.numeric]
    fields += [(s.name, pa.int64() if s.integer else pa.string()) for s in encoding.categorical]
    return pa.schema(fields)


class _DecodeDoFn(beam.DoFn):
    """Codes table -> decoded records table (the bundle is loaded once per worker)."""

    def __init__(self, model_dir: str, schema: pa.Schema):
        self._model_dir = model_dir
        self._schema = schema
        self._rows = Metrics.counter("vaepipe", "rows_decoded")

    def setup(self):
        self._bundle = load_bundle(self._model_dir)

    def process(self, table: pa.Table):
        codes = table.column("code").combine_chunks()
        meta = postprocess.code_format(table.schema)
        width = codes.type.list_size
        flat = codes.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        z = postprocess.dequantize(flat, np.asarray(meta["scale"]), meta["dtype"])
        values = self._bundle.model.reconstruct_from_code(z)
        frame = self._bundle.encoding.decode(np.asarray(values))
        frame.insert(0, "record_id", table.column("record_id").to_pylist())
        self._rows.inc(len(frame))
        yield pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)


def decode(
    model_dir: str,
    codes_dir: str,
    output_dir: str,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
) -> int:
    """Decode every code under `codes_dir` into Parquet records under `output_dir`."""
    bundle = load_bundle(model_dir, load_model=False)
    pattern = (
        os.path.join(codes_dir, "*.parquet") if not codes_dir.endswith(".parquet") else codes_dir
    )
    match_inputs(pattern)
    width = len(bundle.calibration.code_scale)
    schema = decoded_schema(bundle.encoding)

    def build(root):
        _ = (
            root
            | "ReadCodes" >> beam.io.ReadFromParquetBatched(pattern)
            | "CheckWidth" >> beam.Map(_check_width, width)
            | "Decode" >> beam.ParDo(_DecodeDoFn(model_dir, schema))
            | "WriteRecords" >> WriteTables(output_dir, schema)
        )

    metrics = run_pipeline(build, beam_args, test_pipeline)
    rows = metrics.get("rows_decoded", 0)
    echo(f"decoded {rows} records to {output_dir}")
    return rows


def _check_width(table: pa.Table, width: int) -> pa.Table:
    found = table.schema.field("code").type.list_size
    if found != width:
        raise BundleError(f"codes have {found} dimensions but the model's latent code has {width}")
    return table
