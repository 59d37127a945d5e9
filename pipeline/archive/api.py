"""The archive as plain functions, for the Python API (`Detector.compress` / `decompress`).

The same blocks as `vaepipe compress` writes (chunks of `data.chunk_rows` records, each coded
and checked), kept in memory: `Archive.save` writes them as an archive folder that
`vaepipe decompress` reads, and `load_archive` reads one back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from configs.schema import CompressConfig
from pipeline.archive import format as fmt
from pipeline.archive.blocks import Archiver, bits_per_record, output_table
from pipeline.archive.dictionary import dictionary_for
from pipeline.archive.spellings import type_for_archive
from pipeline.core.fs import files_below, read_bytes, read_text, write_bytes, write_text
from pipeline.core.records import DeadLetter, JsonRows, RecordChunk
from pipeline.sources.ids import with_ids

FRAME_SOURCE = "dataframe"


@dataclass
class Archive:
    """An archive in memory: archive.json's content, the block rows, the dead letters."""

    info: dict
    blocks: list[dict]
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(b["rows"] for b in self.blocks)

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks' payloads (what the records cost; the model excluded)."""
        return sum(len(b["payload"]) for b in self.blocks)

    def bits_per_record(self) -> dict[str, float]:
        bits = {p: sum(b[f"bits_{p}"] for b in self.blocks) for p in fmt.BIT_PARTS}
        return bits_per_record(bits, self.rows)

    def save(self, directory: str) -> str:
        """Write the archive folder `vaepipe decompress` reads (summary.json last)."""
        order = {path: i for i, path in enumerate(self.info["sources"])}
        for row in self.blocks:
            name = fmt.block_name(order.get(row["source"], 0), row["chunk"])
            write_bytes(os.path.join(directory, fmt.BLOCKS, name), fmt.block_file(row))
        write_text(os.path.join(directory, fmt.ARCHIVE_FILE), fmt.info_text(self.info))
        summary = {"rows_compressed": self.rows, "blocks": len(self.blocks),
                   "rows_dead_lettered": len(self.dead_letters),
                   "bits_per_record": self.bits_per_record()}  # fmt: skip
        write_text(os.path.join(directory, fmt.SUMMARY), json.dumps(summary, indent=1))
        return directory


def load_archive(directory: str) -> Archive:
    info = fmt.read_archive_info(directory)
    blocks: list[dict] = []
    for path in files_below(os.path.join(directory, fmt.BLOCKS)):
        if path.endswith(fmt.BLOCK_SUFFIX):
            blocks.append(fmt.read_block_file(read_bytes(path), path))
    json.loads(read_text(os.path.join(directory, fmt.SUMMARY)))
    return Archive(info, blocks)


def compress_frame(
    bundle, frame: pd.DataFrame, config, settings: CompressConfig | None = None
) -> Archive:
    """Compress a DataFrame's records under a loaded bundle (its model is needed)."""
    settings = settings or config.compress
    settings.check_columns([s.name for s in bundle.encoding.numeric])
    data = config.data
    exclude = tuple(data.exclude_columns)
    dictionary, digest = dictionary_for(settings, config.data, bundle)
    archiver = Archiver(
        bundle.model, bundle.encoding, settings, data.id_column, exclude, dictionary
    )
    blocks, dead, non_integer = [], [], set()
    for position, chunk in enumerate(_chunks(frame, config, dead)):
        typed, typing_dead = type_for_archive(chunk, bundle.encoding.kinds, exclude)
        dead += typing_dead
        if typed is None:
            continue
        result = archiver.compress_chunk(typed, position)
        dead += result.dead
        non_integer |= set(result.non_integer)
        if result.row is not None:
            blocks.append(result.row)
    numeric = [s.name for s in bundle.encoding.numeric]
    integers = [c for c in numeric if c not in non_integer]
    info = fmt.archive_info(
        bundle, settings, data, [FRAME_SOURCE], list(frame.columns), integers, digest
    )
    return Archive(info, blocks, dead)


def decompress_archive(bundle, archive: Archive, config) -> pd.DataFrame:
    """The archive's records in the original columns and order (`config.data` reads the
    archive's dictionary, if it has one)."""
    fmt.check_model(archive.info, bundle.manifest, bundle.directory, "this archive")
    settings = CompressConfig(**archive.info["settings"])
    info = fmt.with_columns(archive.info, bundle)
    dictionary, _ = dictionary_for(settings, config.data, bundle, info.get("dictionary_sha256"))
    archiver = Archiver(
        bundle.model, bundle.encoding, settings, info["id_column"],
        tuple(info["exclude_columns"]), dictionary,
    )  # fmt: skip
    order = {path: i for i, path in enumerate(info["sources"])}
    tables = []
    for row in sorted(archive.blocks, key=lambda b: (order.get(b["source"], 0), b["chunk"])):
        frame, side = archiver.decompress_payload(row["payload"])
        tables.append(output_table(frame, side, info, bundle.encoding))
    if not tables:
        return pd.DataFrame(columns=info["columns"])
    return pa.concat_tables(tables, promote=True).to_pandas()


def _chunks(frame: pd.DataFrame, config, dead: list) -> list[RecordChunk]:
    """The frame as record chunks of `data.chunk_rows` (values as they are, like a Parquet
    file's rows; ids `dataframe:<row>` without data.id_column)."""
    values = frame.reset_index(drop=True).astype(object)
    values = values.where(values.notna(), None)
    raws = JsonRows(values)
    size = config.data.chunk_rows
    chunks = []
    for start in range(0, len(values), size):
        part = values.iloc[start : start + size].reset_index(drop=True)
        numbers = range(start + 1, start + len(part) + 1)
        chunk, letters = with_ids(
            part, raws[start : start + size], numbers, FRAME_SOURCE, config.data, []
        )
        dead += letters
        if chunk is not None:
            chunks.append(chunk)
    return chunks
