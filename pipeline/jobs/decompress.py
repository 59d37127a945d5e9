"""The decompress job (Beam): archive blocks -> Parquet records in the original columns.

Each block (`ARCHIVE/blocks/block-<source>-<chunk>.vzb`) becomes one file,
`TABLE/part-<source>-<chunk>.parquet`, numbered by its source's position in the archive and
its chunk's position in that source: a reader that lists the
folder in name order (pyarrow, pandas, Spark) sees the records in input order, file by file.
A block that cannot be decoded (corrupt, or a model computing differently: its checksum says
so) becomes a dead letter naming its source and chunk, in `TABLE/_dead_letter/`; the
summary is `TABLE/_summary.json` (leading underscores: Parquet readers skip them).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from configs.schema import CompressConfig
from pipeline.archive import format as fmt
from pipeline.archive.blocks import UNDECODABLE_BLOCK, Archiver
from pipeline.archive.dictionary import dictionary_for
from pipeline.artifacts.bundle import load_bundle
from pipeline.core import metrics
from pipeline.core.fs import exists, files_below, move_tree, write_bytes, write_text
from pipeline.core.records import DEAD, DeadLetter
from pipeline.jobs.runner import run_pipeline
from pipeline.sinks.parquet import WriteDeadLetters
from pipeline.sources.files import match_inputs

ROWS_DECOMPRESSED = "rows_decompressed"
ROWS_UNDECODABLE = "rows_undecodable"
DEAD_LETTER = "_dead_letter"
SUMMARY = "_summary.json"

__all__ = ["DecompressResult", "decompress"]


@dataclass(frozen=True)
class DecompressResult:
    output_dir: str
    rows_in_archive: int
    rows_decompressed: int
    rows_dead_lettered: int
    blocks: int


class _DecompressDoFn(beam.DoFn):
    """A block row -> its records' Parquet file in `staging` (or a dead letter)."""

    def __init__(self, model_dir: str, info: dict, staging: str):
        self._model_dir = model_dir
        self._info = info
        self._staging = staging
        self._sources = {path: i for i, path in enumerate(info["sources"])}
        self._rows = metrics.counter(ROWS_DECOMPRESSED)
        self._undecodable = metrics.counter(ROWS_UNDECODABLE)

    def setup(self):
        bundle = load_bundle(self._model_dir)
        settings = CompressConfig(**self._info["settings"])
        dictionary, _ = dictionary_for(settings, _trained_data(self._model_dir), bundle)
        self._archiver = Archiver(
            bundle.model,
            bundle.encoding,
            settings,
            self._info["id_column"],
            tuple(self._info["exclude_columns"]),
            dictionary,
        )

    def process(self, row: dict):
        try:
            table = self._archiver.decompress_row(row, self._info)
        except ValueError as err:
            self._undecodable.inc(row["rows"])
            yield beam.pvalue.TaggedOutput(DEAD, undecodable(row, err))
            return
        name = f"part-{self._sources.get(row['source'], 99999):05d}-{row['chunk']:08d}.parquet"
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        write_bytes(os.path.join(self._staging, name), buffer.getvalue())
        self._rows.inc(table.num_rows)


def _trained_data(model_dir: str):
    """The data settings the dictionary is read with: the model's own config's (compress
    reads it with the run's, the model's unless data.* keys were overridden)."""
    from pipeline.jobs.settings import model_config

    return model_config(model_dir).data


def undecodable(row: dict, err: Exception) -> DeadLetter:
    where = f"{row['source']}#chunk{row['chunk']}"
    message = f"block of {row['rows']} records ({where}) cannot be decoded: {err}"
    return DeadLetter(where, row["source"], "decompress", UNDECODABLE_BLOCK, message, "")


def decompress(
    model_dir: str,
    archive_dir: str,
    output_dir: str,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
) -> DecompressResult:
    """Decode every block of the archive `archive_dir` into Parquet files under `output_dir`."""
    info = fmt.read_archive_info(archive_dir)
    bundle = load_bundle(model_dir, load_model=False)
    fmt.check_model(info, bundle.manifest, model_dir, archive_dir)
    info = fmt.with_columns(info, bundle)
    settings = CompressConfig(**info["settings"])
    # A dictionary other than the one the archive was coded with is refused here, once.
    expected = info.get("dictionary_sha256")
    dictionary_for(settings, _trained_data(model_dir), bundle, expected)
    summary = json.loads(_read(os.path.join(archive_dir, fmt.SUMMARY)))
    pattern = os.path.join(archive_dir, fmt.BLOCKS, f"*{fmt.BLOCK_SUFFIX}")
    staging = fmt.new_staging(output_dir)

    def build(root):
        decoded = (
            root
            | "MatchBlocks" >> fileio.MatchFiles(pattern)
            | "ReadMatches" >> fileio.ReadMatches()
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadBlocks" >> beam.Map(lambda f: fmt.read_block_file(f.read(), f.metadata.path))
            | "Decompress"
            >> beam.ParDo(_DecompressDoFn(model_dir, info, staging)).with_outputs(DEAD, main="done")
        )
        _ = decoded[DEAD] | "WriteDeadLetters" >> WriteDeadLetters(
            os.path.join(staging, DEAD_LETTER)
        )

    if summary.get("rows_compressed", 0):
        match_inputs(pattern)
    echo(f"decompressing {archive_dir} with {model_dir}")
    counts = run_pipeline(build, beam_args, test_pipeline)
    result = DecompressResult(
        output_dir,
        rows_in_archive=summary.get("rows_compressed", 0),
        rows_decompressed=counts.get(ROWS_DECOMPRESSED, 0),
        rows_dead_lettered=counts.get(ROWS_UNDECODABLE, 0),
        blocks=summary.get("blocks", 0),
    )
    write_text(os.path.join(staging, SUMMARY), json.dumps(result.__dict__, indent=1))
    _publish(staging, output_dir)
    balance = (
        "OK"
        if result.rows_in_archive == result.rows_decompressed + result.rows_dead_lettered
        else "MISMATCH"
    )
    echo(
        f"rows in archive {result.rows_in_archive} = decompressed {result.rows_decompressed} "
        f"+ in undecodable blocks {result.rows_dead_lettered} [{balance}]; records: {output_dir}"
    )
    return result


def _publish(staging: str, output_dir: str) -> None:
    """Replace the records of an earlier run with the staged ones, the summary last."""
    old = [p for p in _listing(output_dir) if os.path.basename(p).startswith("part-")]
    for name in (SUMMARY, DEAD_LETTER):
        if exists(os.path.join(output_dir, name)):
            old.append(os.path.join(output_dir, name))
    if old:
        FileSystems.delete(old)
    for path in _listing(staging):
        if os.path.basename(path).startswith("part-"):
            move_tree(path, os.path.join(output_dir, os.path.basename(path)))
    if exists(os.path.join(staging, DEAD_LETTER)):
        move_tree(os.path.join(staging, DEAD_LETTER), os.path.join(output_dir, DEAD_LETTER))
    move_tree(os.path.join(staging, SUMMARY), os.path.join(output_dir, SUMMARY))
    FileSystems.delete([staging])


def _listing(folder: str) -> list[str]:
    """Files directly in `folder`."""
    return [p for p in files_below(folder) if os.path.dirname(p.rstrip("/")) == folder.rstrip("/")]


def _read(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")
