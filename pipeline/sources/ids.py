"""Record ids: the id column's value, or `<source>:<row>` when a table has none."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from configs.schema import DataConfig
from pipeline.core.records import MISSING_ID, DeadLetter, RecordChunk, take_raw

STAGE = "parse"


def with_ids(
    frame: pd.DataFrame,
    raws: Sequence[str],
    numbers: Sequence[int],
    source: str,
    config: DataConfig,
    dead: list[DeadLetter],
    text: pa.Table | None = None,
) -> tuple[RecordChunk | None, list[DeadLetter]]:
    """Attach record ids: the id column's value, or `<source>:<row>` when there is none.

    `text` (the frame's columns as Arrow strings, if the reader has them) follows the rows.
    """
    if config.id_column is None:
        ids = [f"{source}:{n}" for n in numbers]
        return RecordChunk(source, ids, raws, frame, text), dead
    if config.id_column not in frame.columns:
        raise ValueError(f"{source}: id column {config.id_column!r} is not in the input")
    values = frame[config.id_column]
    present = values.notna().to_numpy()
    for i in np.flatnonzero(~present):
        message = f"record has no value in id column {config.id_column!r}"
        dead.append(
            parse_dead_letter(f"{source}:{numbers[i]}", source, MISSING_ID, message, raws[i])
        )
    ids = values[present].to_numpy(dtype=object)
    if pd.api.types.infer_dtype(ids, skipna=False) != "string":  # e.g. integer ids from Parquet
        ids = [str(v) for v in ids]
    ids = list(ids)
    kept = take_raw(raws, np.flatnonzero(present))
    frame = frame[present].drop(columns=[config.id_column]).reset_index(drop=True)
    if text is not None:
        text = text.filter(pa.array(present)).drop([config.id_column])
    return (RecordChunk(source, ids, kept, frame, text) if ids else None), dead


def parse_dead_letter(
    record_id: str, source: str, reason: str, message: str, raw: str
) -> DeadLetter:
    return DeadLetter(record_id, source, STAGE, reason, message, raw)
