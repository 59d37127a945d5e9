"""The decoding job (Beam): latent codes (Parquet) -> records in the original columns and units.

Image models decode to PNG files, `OUT/images/<name>-<hash>.png` (the input file's name, and a
hash of its full path so that equal names in different folders stay apart), with an index
`OUT/index/*.parquet` of `record_id` -> `image` (the PNG's path).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Callable, Sequence

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipeline import postprocess
from pipeline.beam_runner import run_pipeline
from pipeline.bundle import BundleError, load_bundle
from pipeline.encoding import TabularEncoding
from pipeline.images import PIXELS, png_bytes
from pipeline.io import WriteTables, match_inputs, write_bytes

IMAGES, INDEX = "images", "index"
IMAGE_INDEX_SCHEMA = pa.schema([("record_id", pa.string()), ("image", pa.string())])


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
        frame = self._decode(table)
        frame.insert(0, "record_id", table.column("record_id").to_pylist())
        self._rows.inc(len(frame))
        yield pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)

    def _decode(self, table: pa.Table) -> pd.DataFrame:
        codes = table.column("code").combine_chunks()
        meta = postprocess.code_format(table.schema)
        width = codes.type.list_size
        flat = codes.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        z = postprocess.dequantize(flat, np.asarray(meta["scale"]), meta["dtype"])
        values = self._bundle.model.reconstruct_from_code(z)
        return self._bundle.encoding.decode(np.asarray(values))


class _DecodeImagesDoFn(_DecodeDoFn):
    """Codes table -> one PNG file per record, and an index table (record_id, image)."""

    def __init__(self, model_dir: str, images_dir: str):
        super().__init__(model_dir, IMAGE_INDEX_SCHEMA)
        self._images_dir = images_dir

    def process(self, table: pa.Table):
        frame = self._decode(table)
        ids = table.column("record_id").to_pylist()
        paths = []
        for record_id, pixels in zip(ids, frame[PIXELS], strict=True):
            path = os.path.join(self._images_dir, decoded_image_name(record_id))
            write_bytes(path, png_bytes(pixels))
            paths.append(path)
        self._rows.inc(len(ids))
        yield pa.Table.from_pydict({"record_id": ids, "image": paths}, schema=self._schema)


def decoded_image_name(record_id: str) -> str:
    """A file name for the image decoded from record `record_id` (an input file's path)."""
    stem = posixpath.splitext(posixpath.basename(record_id.rstrip("/")))[0]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80] or "image"
    digest = hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:12]
    return f"{stem}-{digest}.png"


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
    if bundle.manifest.get("data_kind") == "image":
        decoder = _DecodeImagesDoFn(model_dir, os.path.join(output_dir, IMAGES))
        schema, tables_dir = IMAGE_INDEX_SCHEMA, os.path.join(output_dir, INDEX)
    else:
        schema, tables_dir = decoded_schema(bundle.encoding), output_dir
        decoder = _DecodeDoFn(model_dir, schema)

    def build(root):
        _ = (
            root
            | "ReadCodes" >> beam.io.ReadFromParquetBatched(pattern)
            | "CheckWidth" >> beam.Map(_check_width, width)
            | "Decode" >> beam.ParDo(decoder)
            | "WriteRecords" >> WriteTables(tables_dir, schema)
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
