"""The archive's dictionary: records both compress and decompress count into the coder's
context models before every block, so that a block pays nothing to learn what they show
(like a zstd dictionary).

`compress.dictionary` is `training` (the default: the training rows the bundle keeps, up to
`compress.keep_training_rows`), the path of a table of records, or null (none). A kept
dictionary is the bundle part `archive_dictionary.parquet`: the modelled columns of the first
training records as typed (numbers as float64, to the bit; categories as text), read back
through the same reader and typing as any Parquet input. The archive records the
dictionary's SHA-256, and decompress refuses a dictionary whose hash differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.artifacts.bundle import DICTIONARY_FILE
from pipeline.core.errors import BundleError
from pipeline.core.records import NUMERIC, RecordChunk

TRAINING = "training"  # compress.dictionary: the rows the bundle kept from its training data
MAX_DICTIONARY_ROWS = 65_536
# A kept dictionary holds at most this many values (rows x modelled columns), at most 8 MB of
# float64 before compression: a 10,000-column table keeps 104 rows, a 512-column one 2,048,
# NSL-KDD's 41 columns 25,575 (its 20% training file has 25,192).
MAX_DICTIONARY_CELLS = 1 << 20


def dictionary_rows(keep: int, columns: int) -> int:
    """How many training rows a bundle keeps for `keep` = compress.keep_training_rows."""
    return max(0, min(keep, MAX_DICTIONARY_ROWS, MAX_DICTIONARY_CELLS // max(columns, 1)))


def kept_dictionary(chunks: Iterable[RecordChunk], kinds: Mapping[str, str], rows: int):
    """The bundle part of the first `rows` records of typed `chunks` (Parquet bytes), or None
    when there are none. Reading the part back types them as they were."""
    frames, taken = [], 0
    for chunk in chunks:
        if taken >= rows:
            break  # a generator of chunks is read no further than needed
        frames.append(chunk.frame[list(kinds)].head(rows - taken))
        taken += len(frames[-1])
    if not taken:
        return None
    frame = pd.concat(frames, ignore_index=True)
    table = pa.table({name: _as_column(frame[name], kind) for name, kind in kinds.items()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def dictionary_line(part: bytes) -> str:
    """What `vaepipe train` says of the part it keeps."""
    rows = pq.ParquetFile(pa.BufferReader(part)).metadata.num_rows
    return (
        f"kept the first {rows} training records ({len(part) / 1e6:.2f} MB) as the archive's "
        "dictionary (compress.keep_training_rows; 0 keeps none)"
    )


def _as_column(values: pd.Series, kind: str) -> pa.Array:
    """Numbers as float64 (Parquet keeps their bits; missing as null), the rest as text."""
    missing = values.isna().to_numpy()
    if kind == NUMERIC:
        return pa.array(values.to_numpy(dtype=np.float64), mask=missing, type=pa.float64())
    text = values.to_numpy().astype(str).astype(object)
    text[missing] = None
    return pa.array(text, type=pa.string())


def read_dictionary(path: str, data_config, kinds, exclude=()) -> tuple[pd.DataFrame, str]:
    """(the typed modelled columns of the first MAX_DICTIONARY_ROWS records of `path`, the
    file's SHA-256): what both sides count before every block."""
    from pipeline.core.fs import read_bytes
    from pipeline.features.column_types import apply_kinds
    from pipeline.sources.files import file_chunks

    digest = hashlib.sha256(read_bytes(path)).hexdigest()
    frames, rows = [], 0
    for chunk, _ in file_chunks(path, data_config):
        if chunk is None:
            continue
        typed, _ = apply_kinds(chunk, kinds, tuple(exclude))
        if typed is not None:
            frames.append(typed.frame.head(MAX_DICTIONARY_ROWS - rows))
            rows += len(frames[-1])
        if rows >= MAX_DICTIONARY_ROWS:
            break
    if not frames:
        raise ValueError(f"compress.dictionary {path} holds no records the model can read")
    return pd.concat(frames, ignore_index=True), digest


def dictionary_for(settings, data_config, bundle, expected: str | None = None):
    """(the dictionary frame, its SHA-256) of `settings` under `bundle`, or (None, None)
    without one; with `expected`, refuse a dictionary whose SHA-256 is another (a BundleError:
    the archive cannot be decoded with it)."""
    if not settings.dictionary:
        if expected is not None:
            raise BundleError("the archive was coded with a dictionary; its settings name none")
        return None, None
    if settings.dictionary == TRAINING:
        path = os.path.join(bundle.directory, DICTIONARY_FILE)
        if DICTIONARY_FILE not in bundle.manifest.get("sha256", {}):
            if expected is not None:
                raise BundleError(
                    f"the archive was coded with the training rows of a bundle; {bundle.directory} "
                    "keeps none (compress.keep_training_rows was 0 when it was trained)"
                )
            return None, None  # a bundle that keeps no training rows: no dictionary
        part_config = dataclasses.replace(
            data_config, format="parquet", id_column=None, exclude_columns=(), column_names=None
        )
        frame, digest = read_dictionary(path, part_config, bundle.encoding.kinds)
    else:
        frame, digest = read_dictionary(
            settings.dictionary, data_config, bundle.encoding.kinds, data_config.exclude_columns
        )
    if expected is not None and digest != expected:
        raise BundleError(
            f"the archive was coded with another compress.dictionary than {settings.dictionary} "
            "(its SHA-256 differs): only the same file decodes it"
        )
    return frame, digest


def dictionary_from_files(paths: Iterable[str], data_config, kinds: Mapping[str, str], keep: int):
    """The bundle part of the first training records of the files `paths` (in order), or
    None (`keep` 0, no readable records). Rows that typing dead-letters are left out."""
    from pipeline.features.column_types import apply_kinds
    from pipeline.sources.files import file_chunks

    def typed_chunks():
        for path in paths:
            try:
                for chunk, _ in file_chunks(path, data_config):
                    if chunk is not None:
                        typed, _ = apply_kinds(chunk, kinds, tuple(data_config.exclude_columns))
                        if typed is not None:
                            yield typed
            except (OSError, ValueError, pa.ArrowException):
                continue  # the training job dead-lettered this file; the dictionary skips it

    rows = dictionary_rows(keep, len(kinds))
    return kept_dictionary(typed_chunks(), kinds, rows) if rows else None
