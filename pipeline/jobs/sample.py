"""`vaepipe sample`: records drawn from a model, in the form of its data.

Codes are drawn from the prior N(0, I) (seeded), decoded (`pipeline.report.samples`), and
written as the data kind writes decoded records: for a table, Parquet rows of the original
columns under OUT/; for images, PNG files under OUT/images/ with an index OUT/index/*.parquet.
No Beam job: a few thousand rows are decoded in memory, in batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import kinds
from pipeline.artifacts.bundle import load_bundle
from pipeline.report.samples import DECODE_BATCH, decoded_prior

SAMPLE_PREFIX = "sample-"


@dataclass(frozen=True)
class SampleResult:
    output_dir: str
    rows: int
    tables: list[str]


def sample(
    model_dir: str,
    rows: int,
    output_dir: str,
    seed: int = 0,
    likely: bool = False,
    echo: Callable[[str], None] = print,
) -> SampleResult:
    """Draw `rows` records from the model in `model_dir` and write them under `output_dir`.

    Args:
        likely: Write each code's most likely record (`VAE.reconstruct_from_code`) instead of
            a draw from the decoder's likelihood (see `pipeline.report.samples`).
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
        raise ValueError(f"--rows must be a positive number of records. Received: {rows!r}")
    bundle = load_bundle(model_dir)
    kind = kinds.get(bundle.manifest.get("data_kind", "tabular"))
    values = decoded_prior(bundle.model, rows, seed, likely=likely)
    tables_dir = kind.decoded_tables_dir(output_dir)
    written = []
    for part, start in enumerate(range(0, rows, DECODE_BATCH)):
        chunk = values[start : start + DECODE_BATCH]
        ids = [f"{SAMPLE_PREFIX}{i:07d}" for i in range(start, start + len(chunk))]
        table = kind.decoded_table(bundle.encoding, ids, chunk, output_dir)
        path = os.path.join(tables_dir, f"part-{part:05d}.parquet")
        _write_parquet(table, path)
        written.append(path)
    echo(f"sampled {rows} records from {model_dir} (seed {seed}) to {output_dir}")
    return SampleResult(output_dir, rows, written)


def _write_parquet(table: pa.Table, path: str) -> None:
    with FileSystems.create(path) as handle:
        pq.write_table(table, handle)
