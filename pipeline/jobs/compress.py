"""The compress job (Beam): read -> type -> code each chunk into one archive block (checked by
decoding it) -> blocks/ (one file per block), dead letters, archive.json and summary.json.

Records are read like the score job reads them (`pipeline.sources.files.file_chunks`, typed
by the model's column kinds), with each chunk's position in its file kept, so that
`decompress` restores the records in input order. The archive appears only when the job has
succeeded (staged, then moved into place, summary.json last). `pipeline.archive` has the
coding; `configs/tabular.yaml` (section `compress`) the settings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio

from configs import ConfigError, VaepipeConfig, save_config
from configs.schema import CompressConfig
from pipeline.archive import format as fmt
from pipeline.archive.blocks import Archiver, bits_per_record
from pipeline.archive.dictionary import dictionary_for
from pipeline.archive.spellings import type_for_archive
from pipeline.artifacts.bundle import load_bundle
from pipeline.core import metrics
from pipeline.core.fs import files_below, write_bytes, write_text
from pipeline.core.records import DEAD
from pipeline.jobs.runner import run_pipeline
from pipeline.kinds import tabular
from pipeline.sinks.parquet import WriteDeadLetters
from pipeline.sources.files import file_chunks, input_columns, unreadable_file

ROWS_COMPRESSED = "rows_compressed"
BLOCKS_WRITTEN = "archive_blocks"
BITS_PREFIX = "archive_bits_"
NON_INTEGER_PREFIX = "archive_non_integer:"

__all__ = ["CompressResult", "compress"]


@dataclass(frozen=True)
class CompressResult:
    output_dir: str
    rows_read: int
    rows_compressed: int
    rows_dead_lettered: int
    blocks: int
    archive_bytes: int
    input_bytes: int
    bits_per_record: dict
    seconds: float


class _ReadTypedDoFn(beam.DoFn):
    """One file -> (chunk position, typed chunk) and dead letters; counts every record read."""

    def __init__(self, data_config, kinds: dict, exclude: tuple[str, ...]):
        self._config = data_config
        self._kinds = dict(kinds)
        self._exclude = tuple(exclude)
        self._read = metrics.counter(metrics.ROWS_READ)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, readable: fileio.ReadableFile):
        path = readable.metadata.path
        try:
            for position, (chunk, dead) in enumerate(file_chunks(path, self._config)):
                self._read.inc((len(chunk) if chunk is not None else 0) + len(dead))
                if chunk is not None:
                    typed, typing_dead = type_for_archive(chunk, self._kinds, self._exclude)
                    dead = [*dead, *typing_dead]
                    if typed is not None:
                        yield position, typed
                self._dead.inc(len(dead))
                for letter in dead:
                    yield beam.pvalue.TaggedOutput(DEAD, letter)
        except (OSError, ValueError, pa.ArrowException) as err:
            # As the score job: a file that cannot be read at all is one dead letter.
            self._read.inc()
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD, unreadable_file(path, err))


class _CompressDoFn(beam.DoFn):
    """(position, typed chunk) -> one block file in `staging`; the bundle is loaded once per
    worker."""

    def __init__(self, model_dir: str, settings: CompressConfig, data_config, sources, staging):
        self._model_dir = model_dir
        self._settings = settings
        self._data = data_config
        self._sources = {path: i for i, path in enumerate(sources)}
        self._staging = staging
        self._rows = metrics.counter(ROWS_COMPRESSED)
        self._blocks = metrics.counter(BLOCKS_WRITTEN)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)
        self._bits = {part: metrics.counter(BITS_PREFIX + part) for part in fmt.BIT_PARTS}

    def setup(self):
        bundle = load_bundle(self._model_dir)
        dictionary, _ = dictionary_for(self._settings, self._data, bundle)
        self._archiver = Archiver(
            bundle.model,
            bundle.encoding,
            self._settings,
            self._data.id_column,
            tuple(self._data.exclude_columns),
            dictionary,
        )

    def process(self, element):
        position, chunk = element
        result = self._archiver.compress_chunk(chunk, position)
        self._dead.inc(len(result.dead))
        for letter in result.dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        if result.row is None:
            return
        self._rows.inc(result.row["rows"])
        self._blocks.inc()
        for part, counter in self._bits.items():
            counter.inc(result.row[f"bits_{part}"])
        for name in result.non_integer:
            metrics.counter(NON_INTEGER_PREFIX + name).inc()
        name = fmt.block_name(self._sources.get(chunk.source, len(self._sources)), position)
        write_bytes(os.path.join(self._staging, fmt.BLOCKS, name), fmt.block_file(result.row))


def build_compress_pipeline(
    root: beam.Pipeline,
    input_pattern: str,
    model_dir: str,
    encoding,
    config: VaepipeConfig,
    settings: CompressConfig,
    staging: str,
    sources: list[str],
) -> None:
    data = config.data
    exclude = tuple(data.exclude_columns)
    read = (
        root
        | "MatchFiles" >> fileio.MatchFiles(input_pattern)
        | "ReadMatches" >> fileio.ReadMatches()
        | "Reshuffle" >> beam.Reshuffle()
        | "ReadTyped"
        >> beam.ParDo(_ReadTypedDoFn(data, encoding.kinds, exclude)).with_outputs(
            DEAD, main="chunks"
        )
    )
    coded = read.chunks | "Compress" >> beam.ParDo(
        _CompressDoFn(model_dir, settings, data, sources, staging)
    ).with_outputs(DEAD, main="blocks")
    _ = (
        (read[DEAD], coded[DEAD])
        | "AllDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteDeadLetters(os.path.join(staging, fmt.DEAD_LETTER))
    )


def compress(
    model_dir: str,
    input_pattern: str,
    output_dir: str,
    config: VaepipeConfig,
    beam_args: Sequence[str] = (),
    test_pipeline=None,
    echo: Callable[[str], None] = print,
) -> CompressResult:
    """Compress the records `input_pattern` names into the archive `output_dir`, under the
    config's `compress` section."""
    started = time.perf_counter()
    settings = config.compress
    bundle = load_bundle(model_dir, load_model=False)
    if bundle.manifest.get("data_kind", "tabular") != "tabular" or input_pattern.startswith(
        "bq://"
    ):
        raise ConfigError("compress archives tables read from files (CSV, Parquet, TFRecord)")
    paths = tabular.KIND.check_inputs(bundle, input_pattern, config)
    settings.check_columns([s.name for s in bundle.encoding.numeric])
    _, digest = dictionary_for(settings, config.data, bundle)
    staging = fmt.new_staging(output_dir)
    echo(f"compressing {input_pattern} with {model_dir}")
    counts = run_pipeline(
        lambda root: build_compress_pipeline(
            root, input_pattern, model_dir, bundle.encoding, config, settings, staging, paths
        ),
        beam_args,
        test_pipeline,
    )
    info = archive_info(bundle, config, settings, paths, counts, digest)
    write_text(os.path.join(staging, fmt.ARCHIVE_FILE), fmt.info_text(info))
    save_config(config, os.path.join(staging, fmt.CONFIG))
    result = _result(output_dir, staging, counts, paths, time.perf_counter() - started)
    write_text(os.path.join(staging, fmt.SUMMARY), json.dumps(result.__dict__, indent=1))
    fmt.publish_staged(
        staging, output_dir, [fmt.BLOCKS, fmt.DEAD_LETTER, fmt.ARCHIVE_FILE, fmt.CONFIG],
        last=fmt.SUMMARY,
    )  # fmt: skip
    _echo(result, echo)
    return result


def archive_info(
    bundle, config, settings, paths: list[str], counts: dict, digest: str | None = None
) -> dict:
    """archive.json, with the columns in the first input's order."""
    data = config.data
    columns = input_columns(paths[0], data) if paths else []
    if not columns:
        columns = ([data.id_column] if data.id_column else []) + bundle.encoding.columns
        columns += list(data.exclude_columns)
    numeric = [s.name for s in bundle.encoding.numeric]
    integers = [c for c in numeric if not counts.get(NON_INTEGER_PREFIX + c)]
    return fmt.archive_info(bundle, settings, data, paths, columns, integers, digest)


def _result(output_dir, staging, counts: dict, paths: list[str], seconds: float):
    rows = counts.get(ROWS_COMPRESSED, 0)
    bits = {part: counts.get(BITS_PREFIX + part, 0) for part in fmt.BIT_PARTS}
    archive_bytes = sum(_size(p) for p in files_below(os.path.join(staging, fmt.BLOCKS)))
    archive_bytes += _size(os.path.join(staging, fmt.ARCHIVE_FILE))
    return CompressResult(
        output_dir,
        rows_read=counts.get(metrics.ROWS_READ, 0),
        rows_compressed=rows,
        rows_dead_lettered=counts.get(metrics.ROWS_DEAD_LETTERED, 0),
        blocks=counts.get(BLOCKS_WRITTEN, 0),
        archive_bytes=archive_bytes,
        input_bytes=sum(_size(p) for p in paths),
        bits_per_record=bits_per_record(bits, rows),
        seconds=round(seconds, 3),
    )


def _size(path: str) -> int:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def _echo(result: CompressResult, echo: Callable[[str], None]) -> None:
    balance = (
        "OK"
        if result.rows_read == result.rows_compressed + result.rows_dead_lettered
        else "MISMATCH"
    )
    echo(
        f"rows read {result.rows_read} = compressed {result.rows_compressed} + dead-lettered "
        f"{result.rows_dead_lettered} [{balance}]"
    )
    per = result.bits_per_record
    echo(
        f"{per['bytes_per_record']:.2f} bytes per record (bits: code {per['code']:.1f}, "
        f"categories {per['categories']:.1f}, numbers {per['numbers']:.1f}, masks "
        f"{per['masks']:.1f}, header {per['header']:.1f}, ids and excluded {per['side']:.1f}); "
        f"archive {result.archive_bytes} bytes on disk: {result.output_dir}"
    )
