"""The archive's files, and one block's bytes.

    ARCHIVE/
      blocks/block-<source>-<chunk>.vzb  one file per block: its source, chunk (position in
                              the source), rows and bits by part, then the block's bytes
      dead_letter/*.parquet   records that could not be read, typed or coded
      archive.json            what decoding needs besides the blocks: format version, the
                              model it was coded with (SHA-256 of its parts), the columns in
                              input order and their output types, the sources, the settings
      summary.json            row accounting and bits per record by part (written last: an
                              archive without one is incomplete)
      config.yaml             the resolved config

A block's payload: MAGIC, then the header (zlib'd JSON: grids, missing counts, latent steps,
unseen values, CRC32 of the decoded values), the side data (record ids and excluded columns,
lossless: Arrow IPC, xz'd) and the range coder's 32-bit words, each but the last length-prefixed.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.errors import BundleError
from pipeline.core.fs import exists, read_text

FORMAT = "vaepipe-archive"
FORMAT_VERSION = 2  # 2: models chosen by code-length estimates, two-level alphabets
MAGIC = b"VZA1"
BLOCKS = "blocks"
DEAD_LETTER = "dead_letter"
ARCHIVE_FILE = "archive.json"
MODEL_COLUMNS = "model"  # archive.json's columns: the model's own, in the training order
SUMMARY = "summary.json"
CONFIG = "config.yaml"
BIT_PARTS = ("code", "masks", "numbers", "categories", "header", "side")
# The model parts a block's code depends on: another model cannot decode it.
MODEL_PARTS = ("model.keras", "encoding.json")


BLOCK_MAGIC = b"VZB1"
BLOCK_SUFFIX = ".vzb"


def block_name(source_index: int, chunk: int) -> str:
    """blocks/block-<source>-<chunk>.vzb: name order is input order."""
    return f"block-{source_index:05d}-{chunk:08d}{BLOCK_SUFFIX}"


def block_file(row: dict) -> bytes:
    """One block's file: BLOCK_MAGIC, a length-prefixed JSON line (source, chunk, rows, bits
    by part), then the payload."""
    meta = {k: v for k, v in row.items() if k != "payload"}
    data = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return BLOCK_MAGIC + struct.pack("<I", len(data)) + data + row["payload"]


def read_block_file(data: bytes, name: str = "block") -> dict:
    """The row of a block file; a ValueError names the file."""
    if data[:4] != BLOCK_MAGIC or len(data) < 8:
        raise ValueError(f"{name} is not a vaepipe archive block")
    (size,) = struct.unpack_from("<I", data, 4)
    try:
        row = json.loads(data[8 : 8 + size].decode("utf-8"))
    except ValueError as err:
        raise ValueError(f"{name}: its block description is damaged ({err})") from err
    row["payload"] = data[8 + size :]
    return row


@dataclass(frozen=True)
class Payload:
    header: dict
    side: pa.Table | None
    words: np.ndarray


def pack(header_data: bytes, side: bytes, words: np.ndarray) -> bytes:
    words = np.ascontiguousarray(words, dtype="<u4")
    return b"".join(
        [MAGIC, struct.pack("<I", len(header_data)), header_data, struct.pack("<I", len(side)),
         side, words.tobytes()]
    )  # fmt: skip


def unpack(payload: bytes) -> tuple[bytes, bytes, np.ndarray]:
    """(header bytes, side bytes, words); a ValueError names what is wrong."""
    if payload[:4] != MAGIC:
        raise ValueError("not a vaepipe archive block (bad magic bytes)")
    at = 4
    parts = []
    for _ in range(2):
        if len(payload) < at + 4:
            raise ValueError("archive block is truncated")
        (size,) = struct.unpack_from("<I", payload, at)
        at += 4
        if len(payload) < at + size:
            raise ValueError("archive block is truncated")
        parts.append(payload[at : at + size])
        at += size
    rest = payload[at:]
    if len(rest) % 4:
        raise ValueError("archive block is truncated (its code is not whole 32-bit words)")
    return parts[0], parts[1], np.frombuffer(rest, dtype="<u4").astype(np.uint32)


def side_bytes(frame: pd.DataFrame) -> bytes:
    """Columns kept exactly as read (ids, excluded columns): Arrow IPC, xz'd; b"" if none."""
    if frame.shape[1] == 0:
        return b""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return lzma.compress(sink.getvalue(), preset=9 | lzma.PRESET_EXTREME)


def side_table(data: bytes) -> pa.Table | None:
    if not data:
        return None
    return pa.ipc.open_stream(lzma.decompress(data)).read_all()


def checksum(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> int:
    """CRC32 of the values a block decodes to (NaN canonical, None apart from any text)."""
    crc = 0
    for name in numeric:
        x = frame[name].to_numpy(dtype=np.float64).copy()
        x[np.isnan(x)] = np.nan
        crc = zlib.crc32(x.tobytes(), crc)
    for name in categorical:
        text = "\x1e".join("\x00" if v is None else str(v) for v in frame[name].tolist())
        crc = zlib.crc32(text.encode("utf-8", "surrogatepass"), crc)
    return crc


# ---------------------------------------------------------------- archive.json
def archive_info(
    bundle, settings, data_config, sources: list[str], columns: list[str],
    integer_columns: list[str], dictionary_sha256: str | None = None,
) -> dict:  # fmt: skip
    """archive.json: what decoding needs besides the blocks. Columns that are the model's own,
    in its order (a table of the training table's columns), are written as MODEL_COLUMNS."""
    own = list(columns) == bundle_columns(bundle)
    return {
        "dictionary_sha256": dictionary_sha256,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_fingerprint(bundle.manifest),
        "settings": asdict(settings),
        "columns": MODEL_COLUMNS if own else list(columns),
        "id_column": data_config.id_column,
        "exclude_columns": list(data_config.exclude_columns),
        "sources": list(sources),
        # Positions in `columns` (archive.json is part of what the archive costs).
        "integer_columns": [list(columns).index(c) for c in integer_columns if c in columns],
    }


def bundle_columns(bundle) -> list[str] | None:
    """The modelled columns in the training input's order (None: a bundle without them)."""
    return None if bundle.columns is None else [name for name, _ in bundle.columns.columns]


def with_columns(info: dict, bundle) -> dict:
    """archive.json with its column list (MODEL_COLUMNS read from the bundle it was coded
    with, which `check_model` has verified)."""
    if info["columns"] != MODEL_COLUMNS:
        return info
    columns = bundle_columns(bundle)
    if columns is None:
        raise BundleError(f"{bundle.directory} does not list its columns; the archive needs them")
    return {**info, "columns": columns}


def integer_columns(info: dict) -> set[str]:
    """The numeric columns that decode to integers (archive.json keeps their positions)."""
    columns = info["columns"]
    return {columns[i] if isinstance(i, int) else i for i in info.get("integer_columns", ())}


def info_text(info: dict) -> str:
    """archive.json's text: compact (it is part of what the archive costs)."""
    return json.dumps(info, separators=(",", ":"))


def model_fingerprint(manifest: dict) -> dict[str, str]:
    return {part: manifest["sha256"][part] for part in MODEL_PARTS if part in manifest["sha256"]}


def read_archive_info(archive_dir: str) -> dict:
    """archive.json of a complete archive; a BundleError says what is wrong."""
    if not exists(os.path.join(archive_dir, SUMMARY)):
        raise BundleError(
            f"{archive_dir} is not a complete vaepipe archive: {SUMMARY} is missing (was "
            "compress interrupted, or is this the wrong folder?)"
        )
    info = json.loads(read_text(os.path.join(archive_dir, ARCHIVE_FILE)))
    if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{archive_dir} has archive format {info.get('format')!r} version "
            f"{info.get('format_version')}; this vaepipe reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    return info


def check_model(info: dict, manifest: dict, model_dir: str, archive_dir: str) -> None:
    """Refuse a model other than the one the archive was coded with."""
    expected = info["model"]
    found = model_fingerprint(manifest)
    changed = [part for part, sha in expected.items() if found.get(part) != sha]
    if changed:
        raise BundleError(
            f"the archive {archive_dir} was coded with another model than {model_dir} (their "
            f"{', '.join(changed)} differ): only the model it was coded with can decode it"
        )


# ---------------------------------------------------------------- publishing
STAGING_PREFIX = ".staging-"


def new_staging(output_dir: str) -> str:
    """A fresh staging folder inside `output_dir` (hidden from Parquet readers by its dot);
    the folders earlier interrupted runs left are removed first."""
    import uuid

    from pipeline.core.fs import remove_folders

    remove_folders(output_dir, STAGING_PREFIX)
    return os.path.join(output_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


def publish_staged(staging: str, output_dir: str, names: list[str], last: str) -> None:
    """Move the staged outputs into `output_dir`, replacing earlier ones; `last` (the
    summary that marks a whole output) is removed first and moved last."""
    from apache_beam.io.filesystems import FileSystems

    from pipeline.core.fs import move_tree

    for name in [last, *names]:
        target = os.path.join(output_dir, name)
        if exists(target):
            FileSystems.delete([target])
    for name in [*names, last]:
        if exists(os.path.join(staging, name)):
            move_tree(os.path.join(staging, name), os.path.join(output_dir, name))
    if exists(staging):
        FileSystems.delete([staging])
