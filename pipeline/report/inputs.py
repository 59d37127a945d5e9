"""What the report reads: a model bundle's training record and a score output, in small form.

Large outputs are reduced as they are read, a batch of rows at a time, so the report's memory
does not grow with the output: the score columns of at most `MAX_SCORE_ROWS` rows (past that a
seeded sample, and the report says so), the top anomalies (exact, over every row), the row
count, flag count and mean KL and NLL (exact), codes for a sample of records only, and dead
letters as counts and a few examples. Files are read through Beam's file systems, so a gs://
bundle or output works as a local one does.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from apache_beam.io.filesystems import FileSystems

from configs import VaepipeConfig
from configs.loader import from_dict
from pipeline.artifacts import bundle as bundle_lib
from pipeline.core.fs import exists, read_bytes, read_text
from pipeline.features.validation import VALIDATION_REPORT
from pipeline.scoring.outputs import CODES, FLAGS, code_format, dequantize

# The score job's file names (pipeline.jobs.score, a layer above this one, defines them too).
SUMMARY, DEAD_LETTER = "summary.json", "dead_letter"
SCORE_COLUMNS = ("score", "reconstruction_nll", "kl", "p_value", "is_anomaly")
LOG2 = math.log(2.0)
# Rows of the score columns the report holds (about 8 MB); past it, a seeded sample of rows.
MAX_SCORE_ROWS = 200_000
# Rows read at a time: memory is bounded by this and a file's row groups, not its size.
READ_BATCH = 65_536


@dataclass
class ModelFacts:
    """The bundle's training record (no model weights)."""

    directory: str
    bundle: bundle_lib.Bundle
    config: VaepipeConfig
    history: dict
    rows: dict
    kind: str


@dataclass
class ScoreFacts:
    """A score output, reduced: score columns of (a sample of) its rows, the top rows, a code
    sample, the JSON reports, and exact totals over every row.

    `scores` holds every row when the output has at most `MAX_SCORE_ROWS` rows, else a seeded
    uniform sample of that many (`sampled`); `rows`, `flagged`, `means` and `top` always
    count every row.
    """

    directory: str
    scores: dict[str, np.ndarray]
    top: pa.Table
    sample_index: np.ndarray  # rows of `scores` in the code sample
    sample_codes: np.ndarray  # dequantised posterior means of that sample, [n, L]
    top_codes: np.ndarray  # the same for `top`, [len(top), L] (NaN where no code was found)
    code_dtype: str
    code_variance: np.ndarray  # per latent dimension, over a larger sample of the batch
    summary: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    dead_reasons: dict[str, int] = field(default_factory=dict)
    dead_examples: list[dict] = field(default_factory=list)
    rows: int = 0  # rows of the flags table
    flagged: int = 0  # of them, flagged
    means: dict[str, float] = field(default_factory=dict)  # mean kl, reconstruction_nll

    @property
    def sampled(self) -> bool:
        """Whether `scores` holds a sample of the rows rather than all of them."""
        return len(self.scores["score"]) < self.rows


def read_model(model_dir: str) -> ModelFacts:
    bundle = bundle_lib.load_bundle(model_dir, load_model=False)
    config = from_dict(yaml.safe_load(read_text(os.path.join(model_dir, bundle_lib.CONFIG_FILE))))
    report = json.loads(read_text(os.path.join(model_dir, bundle_lib.REPORT_FILE)))
    kind = bundle.manifest.get("data_kind", "tabular")
    return ModelFacts(
        model_dir, bundle, config, report.get("history", {}), report.get("rows", {}), kind
    )


def parquet_files(folder: str) -> list[str]:
    pattern = folder if folder.endswith(".parquet") else os.path.join(folder, "*.parquet")
    found = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in found if m.size_in_bytes > 0)


@contextmanager
def _parquet_file(path: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file opened for reading in parts (row groups, columns), not loaded whole."""
    with FileSystems.open(path) as handle:
        yield pq.ParquetFile(handle)


def read_parquet(folder: str, columns: list[str] | None = None) -> pa.Table | None:
    """Every Parquet file of a folder as one table (None when there are none)."""
    tables = []
    for path in parquet_files(folder):
        with _parquet_file(path) as parquet:
            available = parquet.schema_arrow.names
            wanted = None if columns is None else [c for c in columns if c in available]
            tables.append(parquet.read(columns=wanted))
    if not tables:
        return None
    return pa.concat_tables(tables, promote=True) if len(tables) > 1 else tables[0]


def iter_batches(
    paths: list[str], columns: list[str] | None = None, batch_rows: int = READ_BATCH
) -> Iterator[pa.RecordBatch]:
    """The rows of Parquet files in order, `batch_rows` at a time (the `columns` each file
    has)."""
    for path in paths:
        with _parquet_file(path) as parquet:
            available = parquet.schema_arrow.names
            wanted = None if columns is None else [c for c in columns if c in available]
            yield from parquet.iter_batches(batch_size=batch_rows, columns=wanted)


def read_scores(
    scores_dir: str,
    top_n: int = 20,
    max_points: int = 3000,
    variance_rows: int = 100_000,
    max_rows: int = MAX_SCORE_ROWS,
    batch_rows: int = READ_BATCH,
) -> ScoreFacts:
    """A score output in small form (see the module docstring); the same facts for the same
    output (the samples are seeded). Memory: `max_rows` rows of the score columns, and one
    `batch_rows` batch (or one row group) of a file at a time."""
    files = parquet_files(os.path.join(scores_dir, FLAGS))
    if not files:
        raise FileNotFoundError(f"no flags under {scores_dir}/{FLAGS}: is it a score output?")
    n = sum(_num_rows(path) for path in files)
    rng = np.random.default_rng(0)
    # Every row up to max_rows; the sample indices below are then those of the whole output.
    kept = np.arange(n) if n <= max_rows else np.sort(rng.choice(n, max_rows, replace=False))
    sample_index = np.sort(rng.choice(len(kept), size=min(len(kept), max_points), replace=False))
    wide_index = np.sort(rng.choice(len(kept), size=min(len(kept), variance_rows), replace=False))
    want = np.union1d(kept[sample_index], kept[wide_index])
    scan = _scan_flags(files, kept, want, top_n, batch_rows)
    top = _take_rows(files, scan.top)
    codes = _read_codes(
        scores_dir,
        {
            "sample": scan.ids_at(kept[sample_index]),
            "wide": scan.ids_at(kept[wide_index]),
            "top": top.column("record_id") if top.num_rows else pa.array([], pa.string()),
        },
        batch_rows,
    )
    facts = ScoreFacts(
        scores_dir,
        scan.scores,
        top,
        sample_index,
        codes["sample"],
        codes["top"],
        codes["dtype"],
        np.nanvar(codes["wide"], axis=0) if len(codes["wide"]) else np.zeros(0),
        rows=n,
        flagged=scan.flagged,
        means=scan.means(),
    )
    facts.summary = _read_json(os.path.join(scores_dir, SUMMARY))
    facts.validation = _read_json(os.path.join(scores_dir, VALIDATION_REPORT))
    facts.dead_reasons, facts.dead_examples = _dead_letters(scores_dir, batch_rows=batch_rows)
    return facts


def _num_rows(path: str) -> int:
    with _parquet_file(path) as parquet:
        return parquet.metadata.num_rows


MEAN_COLUMNS = ("kl", "reconstruction_nll")


@dataclass
class _FlagScan:
    """What one pass over the flags keeps: the score columns of the kept rows, the ids of the
    rows whose codes are wanted, the top rows' positions and exact totals."""

    scores: dict[str, np.ndarray]
    id_positions: np.ndarray
    ids: pa.Array
    top: np.ndarray
    flagged: int
    sums: dict[str, float]
    counts: dict[str, int]

    def ids_at(self, positions: np.ndarray) -> pa.Array:
        return self.ids.take(pa.array(np.searchsorted(self.id_positions, positions)))

    def means(self) -> dict[str, float]:
        """The mean of each of MEAN_COLUMNS over every row (NaN ignored, as `np.nanmean`)."""
        return {c: self.sums[c] / self.counts[c] if self.counts[c] else math.nan
                for c in MEAN_COLUMNS}  # fmt: skip


def _scan_flags(
    files: list[str], kept: np.ndarray, want_ids: np.ndarray, top_n: int, batch_rows: int
) -> _FlagScan:
    """One pass over the flags' score columns and ids, a batch at a time."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in SCORE_COLUMNS}
    id_parts: list[pa.Array] = []
    top_score, top_position = np.zeros(0), np.zeros(0, np.int64)
    sums, counts = dict.fromkeys(MEAN_COLUMNS, 0.0), dict.fromkeys(MEAN_COLUMNS, 0)
    flagged, start = 0, 0
    for batch in iter_batches(files, ["record_id", *SCORE_COLUMNS], batch_rows):
        end = start + batch.num_rows
        columns = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in SCORE_COLUMNS}
        here = kept[np.searchsorted(kept, start) : np.searchsorted(kept, end)] - start
        for c in SCORE_COLUMNS:
            parts[c].append(columns[c][here])
        wanted = want_ids[np.searchsorted(want_ids, start) : np.searchsorted(want_ids, end)]
        id_parts.append(batch.column("record_id").take(pa.array(wanted - start)))
        for c in MEAN_COLUMNS:
            values = columns[c].astype(float)
            sums[c] += float(np.nansum(values))
            counts[c] += int(np.count_nonzero(~np.isnan(values)))
        flagged += int(np.count_nonzero(columns["is_anomaly"] == True))  # noqa: E712 - nulls
        # The top rows so far: highest score first, ties to the earlier row (a stable sort of
        # the whole output would order them so); a NaN score ranks last.
        score = np.concatenate(
            [top_score, np.nan_to_num(columns["score"].astype(float), nan=-np.inf)]
        )
        position = np.concatenate([top_position, np.arange(start, end)])
        best = np.lexsort((position, -score))[:top_n]
        top_score, top_position = score[best], position[best]
        start = end
    scores = {c: np.concatenate(parts[c]) if parts[c] else np.zeros(0) for c in SCORE_COLUMNS}
    ids = pa.concat_arrays(id_parts) if id_parts else pa.array([], pa.string())
    return _FlagScan(scores, want_ids, ids, top_position, flagged, sums, counts)


def _take_rows(files: list[str], positions: np.ndarray) -> pa.Table:
    """Every column of the flags rows at `positions` (in that order), reading only the row
    groups that hold them."""
    pieces, found, offset = [], [], 0
    for path in files:
        with _parquet_file(path) as parquet:
            for group in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(group).num_rows
                inside = positions[(positions >= offset) & (positions < offset + size)]
                if inside.size:
                    table = parquet.read_row_group(group)
                    pieces.append(table.take(pa.array(inside - offset)))
                    found.append(inside)
                offset += size
    if not pieces:
        return pa.table({"record_id": pa.array([], pa.string())})
    table = pa.concat_tables(pieces, promote=True) if len(pieces) > 1 else pieces[0]
    row_of = {int(p): i for i, p in enumerate(np.concatenate(found))}  # in the order read
    return table.take(pa.array([row_of[int(p)] for p in positions], pa.int64()))


def _read_codes(scores_dir: str, wanted: dict[str, pa.Array], batch_rows: int = READ_BATCH) -> dict:
    """Dequantised codes for each list of record ids (rows in the ids' order; NaN if absent;
    the first code row of an id that occurs twice). The codes are read a batch at a time and
    only the wanted ones kept."""
    files = parquet_files(os.path.join(scores_dir, CODES))
    if not files:
        return {name: np.zeros((len(ids), 0), np.float32) for name, ids in wanted.items()} | {
            "dtype": "none"
        }
    with _parquet_file(files[0]) as parquet:
        schema = parquet.schema_arrow
    meta = code_format(schema)
    width = schema.field("code").type.list_size
    wanted = {name: _array(ids) for name, ids in wanted.items()}
    unique = pc.unique(pa.concat_arrays(list(wanted.values())))
    # One row per wanted id, and a last row of NaN for the ids that have no code.
    values = np.full((len(unique) + 1, width), np.nan, dtype=np.float32)
    filled = np.zeros(len(unique) + 1, bool)
    scale = np.asarray(meta["scale"])
    for batch in iter_batches(files, ["record_id", "code"], batch_rows):
        position = pc.index_in(batch.column("record_id"), value_set=unique)
        position = position.fill_null(-1).to_numpy()
        rows = np.flatnonzero(position >= 0)
        # The first row of each id in this batch, unless an earlier batch had one.
        first, at = np.unique(position[rows], return_index=True)
        new = ~filled[first]
        rows, first = rows[at][new], first[new]
        if rows.size:
            codes = batch.column("code").take(pa.array(rows))
            flat = codes.flatten().to_numpy(zero_copy_only=False)
            values[first] = dequantize(flat.reshape(-1, width), scale, meta["dtype"])
            filled[first] = True
    out = {"dtype": meta["dtype"]}
    for name, ids in wanted.items():
        out[name] = values[pc.index_in(ids, value_set=unique).fill_null(-1).to_numpy()]
    return out


def _array(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids


def _read_json(path: str) -> dict:
    return json.loads(read_text(path)) if exists(path) else {}


def _dead_letters(
    scores_dir: str, examples: int = 8, batch_rows: int = READ_BATCH
) -> tuple[dict[str, int], list[dict]]:
    """Dead letters per reason (most first) and the first few, read a batch at a time."""
    files = parquet_files(os.path.join(scores_dir, DEAD_LETTER))
    reasons: dict[str, int] = {}
    first: list[dict] = []
    columns = ["record_id", "reason", "field", "stage", "message"]
    for batch in iter_batches(files, columns, batch_rows):
        for row in pc.value_counts(batch.column("reason")).to_pylist():
            reasons[row["values"]] = reasons.get(row["values"], 0) + int(row["counts"])
        if len(first) < examples:
            first += batch.slice(0, examples - len(first)).to_pylist()
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1])), first


def kept_epoch(history: dict, warmup_epochs: int) -> int | None:
    """The 1-based epoch whose weights the bundle holds: the lowest validation loss once the
    KL warm-up is over (as `vae_model.fit_vae` selects it); None without a validation loss."""
    losses = history.get("val_loss")
    if not losses:
        return None
    start = min(max(0, warmup_epochs - 1), len(losses) - 1)
    values = np.asarray(losses[start:], float)
    values = np.where(np.isfinite(values), values, np.inf)
    return start + int(np.argmin(values)) + 1


def read_bytes_or_none(path: str) -> bytes | None:
    try:
        return read_bytes(path)
    except Exception:  # noqa: BLE001 - an input image may be gone or remote; it is optional
        return None
