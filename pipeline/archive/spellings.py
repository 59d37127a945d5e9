"""Boolean columns come back as they were spelled: "yes", "N", "1", not the model's "true".

The model reads a boolean column in any common spelling (`features.column_types.to_booleans`)
and codes its canonical value, "false" or "true": the cheap part, under the decoder's softmax.
An archive promises the categories exactly, so each value whose spelling is not the canonical
one also travels, as read, in a side column (`<column>` + SUFFIX, null where the spelling is
the canonical one); the side data is xz'd, so a column spelled yes/no throughout costs a few
bits per thousand records. Decompression puts the spellings back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.records import DeadLetter, RecordChunk
from pipeline.features.column_types import BOOLEAN, apply_kinds, to_booleans

SUFFIX = "\x1fspelling"  # a unit separator: no CSV header or DataFrame column ends with it


def boolean_columns(kinds: Mapping[str, str]) -> list[str]:
    return [name for name, kind in kinds.items() if kind == BOOLEAN]


def spelling_columns(kinds: Mapping[str, str]) -> tuple[str, ...]:
    """The side columns that carry the spellings of the boolean columns among `kinds`."""
    return tuple(name + SUFFIX for name in boolean_columns(kinds))


def type_for_archive(
    chunk: RecordChunk, kinds: Mapping[str, str], exclude: tuple[str, ...]
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """`apply_kinds`, keeping every column the model does not code as read: the excluded ones,
    each boolean column's spellings, and those training left out (timestamps, identifiers,
    constants), which an archive must restore too."""
    chunk = with_spellings(chunk, kinds)
    kept = tuple(exclude) + spelling_columns(kinds)
    kept += tuple(c for c in chunk.frame.columns if c not in kinds and c not in kept)
    return apply_kinds(chunk, kinds, kept)


def with_spellings(chunk: RecordChunk, kinds: Mapping[str, str]) -> RecordChunk:
    """The chunk with a spelling column per boolean column it has (as read, None where the
    canonical spelling is what was read)."""
    names = [n for n in boolean_columns(kinds) if n in chunk.frame.columns]
    if not names:
        return chunk
    frame = chunk.frame.copy()
    for name in names:
        raw = frame[name]
        canonical = to_booleans(raw)
        text = raw.to_numpy(dtype=object)
        same = np.array([r is None or r == c for r, c in zip(text, canonical, strict=True)])
        spelled = np.where(same, None, [None if r is None else str(r) for r in text])
        frame[name + SUFFIX] = spelled
    return RecordChunk(chunk.source, chunk.record_ids, chunk.raw, frame, chunk.text)


def restore_spellings(arrays: dict[str, pa.Array], names: Sequence[str]) -> None:
    """Put each boolean column's spellings back (in place) and drop their side columns."""
    for name in names:
        side = arrays.pop(name + SUFFIX, None)
        if side is None or name not in arrays:
            continue
        side = side.cast(pa.string())
        arrays[name] = pc.if_else(pc.is_valid(side), side, arrays[name].cast(pa.string()))
