"""Jobs in this process, for data already in memory or small enough to read here (the Python
API): the stages of the Beam jobs called as plain functions, so a DataFrame and the same rows
in a file give the same typing, encoding, model input and scores.

Tables only: image folders go through the Beam jobs (`pipeline.jobs.train` / `score`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from configs import ConfigError, VaepipeConfig
from pipeline.archive.dictionary import dictionary_rows, kept_dictionary
from pipeline.artifacts import bundle as bundle_lib
from pipeline.artifacts.shards import SPLITS, rows_dataset, rows_epoch_dataset, split_mask
from pipeline.core.records import DeadLetter, JsonRows, RecordChunk
from pipeline.features.column_types import (
    ProfileColumns,
    apply_kinds,
    column_decisions,
    modelled_kinds,
)
from pipeline.features.drift import count_chunk, references, with_reference
from pipeline.features.encode import encode_chunk
from pipeline.features.statistics import (
    infer_schema,
    kinds_from_schema,
    stats_options,
    to_record_batch,
)
from pipeline.jobs.settings import check_model_settings
from pipeline.jobs.train import (
    TrainResult,
    bundle_parts,
    calibrated,
    calibration_line,
    calibration_splits,
    check_rows,
    column_lines,
    curated_schema,
    effective_batch_size,
    fit_model,
    latent_line,
    member_histories,
    new_model,
    train_members,
)
from pipeline.kinds.tabular import check_columns, curated_decisions, derive_encoding
from pipeline.scoring.core import exact_float32_scoring, score_chunk
from pipeline.scoring.outputs import OutputContext, to_outputs
from pipeline.sources.files import file_chunks, match_inputs
from pipeline.sources.ids import with_ids

FRAME_SOURCE = "dataframe"

Data = pd.DataFrame | str | os.PathLike


def read_chunks(data: Data, config: VaepipeConfig) -> Iterator[tuple[RecordChunk | None, list]]:
    """(chunk, dead letters) from a DataFrame (one chunk; record ids `dataframe:<row>` without
    `data.id_column`) or from the files a pattern matches (ids as the CLI gives them)."""
    if config.data.kind != "tabular":
        raise ConfigError(
            f"in-process jobs read tables; data.kind {config.data.kind} goes through the Beam "
            "jobs (give a path to vaepipe.fit, or use the CLI)"
        )
    if isinstance(data, pd.DataFrame):
        yield frame_chunk(data, config)
        return
    for path in match_inputs(os.fspath(data)):
        yield from file_chunks(path, config.data)


def frame_chunk(frame: pd.DataFrame, config: VaepipeConfig) -> tuple[RecordChunk | None, list]:
    """A DataFrame as one chunk, values as they are (None where missing), like a Parquet
    file's rows: typing then converts or dead-letters them, so a text value in a number
    column is a dead letter naming its record and field, not a conversion error."""
    values = frame.reset_index(drop=True).astype(object)
    values = values.where(values.notna(), None)
    raws = JsonRows(values)
    numbers = range(1, len(values) + 1)
    return with_ids(values, raws, numbers, FRAME_SOURCE, config.data, [])


@dataclass
class PreparedFrame:
    """The in-process counterpart of the training data job's outputs."""

    encoding: Any
    statistics: Any
    schema: Any
    splits: dict[str, np.ndarray]
    dead: list[DeadLetter]
    columns: dict | None = None  # what became of each column (modelled, left out, why)
    record_columns: str | None = None  # the bundle's record_columns.json part
    dictionary: bytes | None = None  # the bundle's archive_dictionary.parquet part


def prepare(data: Data, config: VaepipeConfig) -> PreparedFrame:
    """Read, type, profile (TFDV, in memory), encode and split training records."""
    from tensorflow_data_validation.statistics import stats_impl

    chunks, dead = _read_all(data, config)
    cap, exclude = config.schema.int_categorical_max_values, tuple(config.data.exclude_columns)
    profile = ProfileColumns(cap)
    profiles = profile.create_accumulator()
    for chunk in chunks:
        profiles = profile.add_input(profiles, chunk)
    curated = curated_schema(config)
    if curated is not None:
        columns = curated_decisions(kinds_from_schema(curated))
    else:
        columns = column_decisions(profiles, config.data, cap, config.schema)
    kinds = modelled_kinds(columns)
    typed_chunks = []
    for chunk in chunks:
        typed, bad = apply_kinds(chunk, kinds, exclude)
        dead += bad
        if typed is not None:
            typed_chunks.append(typed)
    typed = concat_chunks(typed_chunks)
    # As the Beam job: the encoding and statistics from the train split alone.
    train_part = typed.take(split_mask(typed.record_ids, "train", config.train))
    options = stats_options(config.schema.max_vocabulary, schema=curated)
    stats = stats_impl.generate_statistics_in_memory(to_record_batch(train_part, kinds), options)
    encoding = derive_encoding(
        stats, kinds, profiles, config.schema.max_vocabulary, config.data.numeric_scaling
    )
    schema = curated if curated is not None else infer_schema(stats, kinds)
    refs = references(stats)
    stats = with_reference(stats, count_chunk(train_part, refs), refs)
    encoded = encode_chunk(typed, encoding, exclude)
    splits = {s: encoded.inputs[split_mask(encoded.record_ids, s, config.train)] for s in SPLITS}
    restore = bundle_lib.record_columns(profiles, kinds, config.data.id_column).to_json()
    rows = dictionary_rows(config.compress.keep_training_rows, len(kinds))
    kept = kept_dictionary([typed], kinds, rows) if rows else None
    return PreparedFrame(encoding, stats, schema, splits, dead, columns, restore, kept)


def train(
    data: Data, model_dir: str, config: VaepipeConfig, echo: Callable[[str], None] = print
) -> TrainResult:
    """Train on in-memory records and write a model bundle (the same bundle `train` writes)."""
    started = time.time()
    check_model_settings(config)
    prepared = prepare(data, config)
    for line in column_lines(prepared.columns):
        echo(line)
    rows = {split: int(len(v)) for split, v in prepared.splits.items()}
    check_rows(rows, config)
    encoding, splits = prepared.encoding, prepared.splits
    batch = effective_batch_size(rows["train"], config.train)
    echo(f"training the VAE on {rows['train']} rows ({len(encoding.columns)} features)")
    echo(latent_line(encoding, config))
    work = tempfile.mkdtemp(prefix="vaepipe-fit-")
    try:

        def fit_one(member: VaepipeConfig, where: str) -> tuple[Any, dict]:
            model = new_model(encoding, member)
            train_rows, val_rows = _training_data(splits, batch, member)
            return model, fit_model(
                model, train_rows, val_rows, member, rows["train"], batch, where, echo
            )

        models, histories = train_members(config, work, fit_one, lambda line: echo(line.strip()))
        model, history = models[0], histories[0]
        held_out = calibration_splits(rows)
        if held_out != ("calibration",):
            echo(f"calibrating on {calibration_line(rows, held_out)}")
        calibration, scores, quality = calibrated(
            models, [splits[s] for s in held_out], held_out, config, echo
        )
        report = {
            "history": history,
            **member_histories(histories),
            "rows": rows,
            "batch_size": batch,
            "seconds": round(time.time() - started, 1),
            "columns": prepared.columns,
            "calibration": quality,
        }
        schema, stats = str(prepared.schema).encode(), prepared.statistics.SerializeToString()
        parts = bundle_parts(encoding, schema, stats, calibration, scores, config, report)
        parts[bundle_lib.COLUMNS_FILE] = prepared.record_columns.encode()
        if prepared.dictionary is not None:
            parts[bundle_lib.DICTIONARY_FILE] = prepared.dictionary
        members = tuple(models[1:])
        bundle_lib.write_bundle(model, model_dir, parts, config.data.kind, work, members)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(model_dir, history, rows, calibration.threshold)


def _training_data(splits: dict[str, np.ndarray], batch: int, config: VaepipeConfig):
    """The train and validation rows as the Beam job streams them (the same shuffling, so a
    table of one shard trains identically through the API and the CLI); device-resident
    training takes the matrices."""
    t = config.train
    if t.device_resident:
        return splits["train"], splits["validation"]
    train = rows_epoch_dataset(splits["train"], batch, t.seed, t.epochs)
    return train, rows_dataset(splits["validation"], batch)


@dataclass
class Scored:
    """In-process scoring's outputs: the flags and codes tables, and the dead letters."""

    flags: pa.Table
    codes: pa.Table
    dead: list[DeadLetter]


def score(bundle: Any, data: Data, config: VaepipeConfig) -> Scored:
    """Score records with a loaded bundle through the same core as the Beam job."""
    exact_float32_scoring()
    scorer = bundle.scorer
    scorer.score_mc_samples = config.scoring.mc_samples
    ctx = OutputContext.from_bundle(bundle, config)
    exclude = tuple(config.data.exclude_columns)
    batch_size = config.scoring.batch_size
    flags, codes, dead = [], [], []
    for chunk, bad in read_chunks(data, config):
        dead += bad
        if chunk is None:
            continue
        check_columns(bundle, list(chunk.frame.columns), chunk.source)
        typed, bad = apply_kinds(chunk, bundle.encoding.kinds, exclude)
        dead += bad
        if typed is None:
            continue
        scored = score_chunk(scorer, encode_chunk(typed, bundle.encoding, exclude), batch_size)
        dead += scored.dead
        if len(scored.chunk):
            f, c = to_outputs(scored.chunk.record_ids, scored.terms, scored.chunk.passthrough, ctx)
            flags.append(f)
            codes.append(c)
    return Scored(_concat(flags, ctx.flags_schema), _concat(codes, ctx.codes_schema), dead)


def concat_chunks(chunks: list[RecordChunk]) -> RecordChunk:
    """One chunk of all rows (raw inputs as text)."""
    if not chunks:
        raise ValueError("no usable records: every record was dead-lettered")
    return RecordChunk(
        source=chunks[0].source,
        record_ids=[rid for c in chunks for rid in c.record_ids],
        raw=[raw for c in chunks for raw in c.raw],
        frame=pd.concat([c.frame for c in chunks], ignore_index=True),
    )


def _read_all(data: Data, config: VaepipeConfig) -> tuple[list[RecordChunk], list]:
    chunks, dead = [], []
    for chunk, bad in read_chunks(data, config):
        dead += bad
        if chunk is not None:
            chunks.append(chunk)
    return chunks, dead


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


__all__ = ["Scored", "prepare", "read_chunks", "score", "train"]
