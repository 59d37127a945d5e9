"""A typed chunk of records <-> one archive block (a row of `blocks/`), checked as it is made.

`Archiver.compress_chunk` codes the modelled columns (`coder`), keeps the record ids and the
excluded columns exactly (side data), decodes the block's own bytes and checks the bound
(`verify`) before the block leaves: an archive that breaks the bound is never written.
`Archiver.decompress_row` turns a block back into a table of the original columns.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from configs.schema import CompressConfig
from pipeline.archive import format as fmt
from pipeline.archive import spellings
from pipeline.archive.coder import BlockCoder, header_bytes, header_from_bytes
from pipeline.archive.verify import check_block
from pipeline.core.records import INT_CATEGORICAL, DeadLetter, RecordChunk

STAGE = "compress"
NOT_AN_INTEGER = "not_an_integer"
UNDECODABLE_BLOCK = "undecodable_block"


@dataclass
class BlockResult:
    row: dict | None  # the blocks/ row, or None when every record was dead-lettered
    non_integer: list[str] = field(default_factory=list)  # numeric columns with fractions
    dead: list[DeadLetter] = field(default_factory=list)


class Archiver:
    """Compresses typed chunks and decompresses blocks under one model bundle."""

    def __init__(
        self,
        model,
        encoding,
        settings: CompressConfig,
        id_column: str | None = None,
        exclude: tuple[str, ...] = (),
        dictionary: pd.DataFrame | None = None,
    ) -> None:
        self.encoding = encoding
        self._coder = BlockCoder(model, encoding, settings, dictionary)
        self._settings = settings
        self._id_column = id_column
        # The boolean columns' spellings travel as side columns (`spellings`).
        self._exclude = tuple(exclude) + spellings.spelling_columns(encoding.kinds)
        self._numeric = [s.name for s in encoding.numeric]
        self._categorical = [s.name for s in encoding.categorical]

    # ---------------------------------------------------------------- compress
    def compress_chunk(self, chunk: RecordChunk, index: int) -> BlockResult:
        chunk, dead = self._integer_categories(chunk)
        if chunk is None:
            return BlockResult(None, dead=dead)
        frame = chunk.frame[self._numeric + self._categorical]
        block = self._coder.encode(frame)
        side = fmt.side_bytes(self._side_frame(chunk))
        payload = fmt.pack(header_bytes(block.header), side, block.words)
        decoded, _ = self.decompress_payload(payload, check=False)
        check_block(frame, decoded, self.encoding, self._settings, chunk.record_ids, chunk.source)
        block.header["crc"] = fmt.checksum(decoded, self._numeric, self._categorical)
        header = header_bytes(block.header)
        payload = fmt.pack(header, side, block.words)
        bits = block.bits.to_dict()
        bits["header"] = 8 * (len(header) + 12)  # with the magic and the two lengths
        bits["side"] = 8 * len(side)
        row = {"source": chunk.source, "chunk": index, "rows": len(chunk), "payload": payload}
        row.update({f"bits_{part}": int(bits.get(part, 0)) for part in fmt.BIT_PARTS})
        non_integer = [
            name
            for name, grid in zip(self._numeric, block.header["grids"], strict=True)
            if not grid["integer"] and frame[name].notna().any()
        ]
        return BlockResult(row, non_integer, dead)

    def _side_frame(self, chunk: RecordChunk) -> pd.DataFrame:
        columns: dict[str, object] = {}
        if self._id_column:
            columns[self._id_column] = pd.Series(chunk.record_ids, dtype=object)
        # The excluded columns, then any other column the model does not code (one training
        # left out): side data, so that every column read comes back.
        modelled = set(self._numeric) | set(self._categorical)
        others = [c for c in chunk.frame.columns if c not in modelled and c not in self._exclude]
        for name in (*self._exclude, *others):
            if name in chunk.frame.columns and name not in columns:
                columns[name] = chunk.frame[name].reset_index(drop=True)
        return pd.DataFrame(columns)

    def _integer_categories(self, chunk: RecordChunk):
        """Integer categories must decode to integers: a value that is not one (it would be
        kept as text by scoring, in the OOV bucket) is a dead letter naming it."""
        bad = np.zeros(len(chunk), dtype=bool)
        dead: list[DeadLetter] = []
        for spec in self.encoding.categorical:
            if self.encoding.kinds[spec.name] != INT_CATEGORICAL:
                continue
            values = chunk.frame[spec.name]
            text = values.dropna().astype(str)
            numbers = pd.to_numeric(text, errors="coerce")
            with np.errstate(invalid="ignore"):
                fraction = numbers != np.rint(numbers)
            wrong = text.index[numbers.isna() | fraction | (numbers.abs() >= 2**63)]
            for i in wrong:
                if not bad[i]:
                    message = (
                        f"column {spec.name!r} holds integers, but this value is "
                        f"{values.iloc[i]!r}: an archive decodes the column to integers"
                    )
                    dead += chunk.dead_letters([i], STAGE, NOT_AN_INTEGER, message, spec.name)
                bad[i] = True
        if not bad.any():
            return chunk, dead
        return (chunk.take(~bad) if (~bad).any() else None), dead

    # ---------------------------------------------------------------- decompress
    def decompress_payload(
        self, payload: bytes, check: bool = True
    ) -> tuple[pd.DataFrame, pa.Table | None]:
        """(modelled columns, side table) of one block; with `check`, the block's CRC32."""
        header_data, side, words = fmt.unpack(payload)
        try:
            header = header_from_bytes(header_data)
            frame = self._coder.decode(header, words)
        # constriction asserts on a code its models cannot have written; the rest is a
        # header that is not one.
        except (AssertionError, KeyError, IndexError, TypeError, ValueError, zlib.error) as err:
            raise ValueError(f"the block cannot be decoded ({type(err).__name__}: {err})") from err
        if check and fmt.checksum(frame, self._numeric, self._categorical) != header["crc"]:
            raise ValueError(
                "the block decoded to other values than it was checked with (checksum "
                "mismatch): the model computes differently here than where it was compressed"
            )
        return frame, fmt.side_table(side)

    def decompress_row(self, row: dict, info: dict) -> pa.Table:
        frame, side = self.decompress_payload(row["payload"])
        if len(frame) != row["rows"]:
            raise ValueError(f"block has {len(frame)} rows, its row says {row['rows']}")
        return output_table(frame, side, info, self.encoding)


def output_schema(info: dict, encoding) -> dict[str, pa.DataType]:
    """The types the archive decodes the modelled columns to (others come from side data)."""
    types: dict[str, pa.DataType] = {}
    integers = fmt.integer_columns(info)
    for spec in encoding.numeric:
        types[spec.name] = pa.int64() if spec.name in integers else pa.float64()
    for spec in encoding.categorical:
        types[spec.name] = pa.int64() if spec.integer else pa.string()
    return types


def output_table(frame: pd.DataFrame, side: pa.Table | None, info: dict, encoding) -> pa.Table:
    """The original columns, in input order, with their types."""
    types = output_schema(info, encoding)
    arrays: dict[str, pa.Array] = {}
    for name, kind in types.items():
        values = frame[name]
        if kind == pa.int64() and name in {s.name for s in encoding.numeric}:
            x = values.to_numpy(dtype=np.float64)
            arrays[name] = pa.array(np.nan_to_num(x).astype(np.int64), mask=np.isnan(x))
        elif kind == pa.int64():
            present = values.notna().to_numpy()
            ints = np.zeros(len(values), dtype=np.int64)
            ints[present] = [int(v) for v in values[present]]
            arrays[name] = pa.array(ints, mask=~present)
        elif kind == pa.string():
            arrays[name] = pa.array(values.tolist(), type=pa.string())
        else:
            arrays[name] = pa.array(values.to_numpy(dtype=np.float64), type=pa.float64())
    if side is not None:
        for name in side.column_names:
            column = side.column(name)
            arrays[name] = column.cast(pa.string()) if pa.types.is_null(column.type) else column
    spellings.restore_spellings(arrays, spellings.boolean_columns(encoding.kinds))
    order = [c for c in info["columns"] if c in arrays] + [
        c for c in arrays if c not in info["columns"]
    ]
    return pa.table({name: arrays[name] for name in order})


def bits_per_record(bits: dict[str, int], rows: int) -> dict[str, float]:
    """Bits per record by part, and the total (0 when there are no rows)."""
    out = {part: (bits.get(part, 0) / rows if rows else 0.0) for part in fmt.BIT_PARTS}
    out["total"] = sum(out.values())
    out["bytes_per_record"] = out["total"] / 8
    return {k: (round(v, 4) if math.isfinite(v) else v) for k, v in out.items()}
