"""What the report reads: a model bundle's training record and a score output, in small form.

Large outputs are reduced as they are read: scores to arrays of a few columns, the top
anomalies to a few rows, codes to a sample. Files are read through Beam's file systems, so
a gs:// bundle or output works as a local one does.
"""

from __future__ import annotations

import io
import json
import math
import os
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
    """A score output, reduced: score columns, top rows, a code sample, the JSON reports."""

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


def read_parquet(folder: str, columns: list[str] | None = None) -> pa.Table | None:
    """Every Parquet file of a folder as one table (None when there are none)."""
    tables = []
    for path in parquet_files(folder):
        with FileSystems.open(path) as handle:
            data = io.BytesIO(handle.read())
        available = pq.read_schema(data).names
        data.seek(0)
        wanted = None if columns is None else [c for c in columns if c in available]
        tables.append(pq.read_table(data, columns=wanted))
    if not tables:
        return None
    return pa.concat_tables(tables, promote=True) if len(tables) > 1 else tables[0]


def read_scores(
    scores_dir: str, top_n: int = 20, max_points: int = 3000, variance_rows: int = 100_000
) -> ScoreFacts:
    flags = read_parquet(os.path.join(scores_dir, FLAGS))
    if flags is None:
        raise FileNotFoundError(f"no flags under {scores_dir}/{FLAGS}: is it a score output?")
    scores = {c: flags.column(c).to_numpy() for c in SCORE_COLUMNS}
    order = np.argsort(-np.nan_to_num(scores["score"], nan=-np.inf), kind="stable")
    top = flags.take(pa.array(order[:top_n]))
    rng = np.random.default_rng(0)
    n = flags.num_rows
    sample_index = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    wide_index = np.sort(rng.choice(n, size=min(n, variance_rows), replace=False))
    ids = flags.column("record_id")
    codes = _read_codes(
        scores_dir,
        {
            "sample": ids.take(pa.array(sample_index)),
            "wide": ids.take(pa.array(wide_index)),
            "top": top.column("record_id"),
        },
    )
    facts = ScoreFacts(
        scores_dir,
        scores,
        top,
        sample_index,
        codes["sample"],
        codes["top"],
        codes["dtype"],
        np.nanvar(codes["wide"], axis=0) if len(codes["wide"]) else np.zeros(0),
    )
    facts.summary = _read_json(os.path.join(scores_dir, SUMMARY))
    facts.validation = _read_json(os.path.join(scores_dir, VALIDATION_REPORT))
    facts.dead_reasons, facts.dead_examples = _dead_letters(scores_dir)
    return facts


def _read_codes(scores_dir: str, wanted: dict[str, pa.ChunkedArray]) -> dict:
    """Dequantised codes for each list of record ids (rows in the ids' order; NaN if absent)."""
    files = parquet_files(os.path.join(scores_dir, CODES))
    if not files:
        return {name: np.zeros((len(ids), 0), np.float32) for name, ids in wanted.items()} | {
            "dtype": "none"
        }
    table = read_parquet(os.path.join(scores_dir, CODES))
    meta = code_format(table.schema)
    width = table.schema.field("code").type.list_size
    out = {"dtype": meta["dtype"]}
    for name, ids in wanted.items():
        position = pc.index_in(ids, value_set=table.column("record_id").combine_chunks())
        position = position.fill_null(-1).to_numpy()
        values = np.full((len(ids), width), np.nan, dtype=np.float32)
        found = position >= 0
        if found.any():
            rows = table.column("code").take(pa.array(position[found].astype(np.int64)))
            flat = rows.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            z = dequantize(flat.reshape(-1, width), np.asarray(meta["scale"]), meta["dtype"])
            values[found] = z
        out[name] = values
    return out


def _read_json(path: str) -> dict:
    return json.loads(read_text(path)) if exists(path) else {}


def _dead_letters(scores_dir: str, examples: int = 8) -> tuple[dict[str, int], list[dict]]:
    table = read_parquet(os.path.join(scores_dir, DEAD_LETTER), ["record_id", "reason", "field",
                                                                  "stage", "message"])  # fmt: skip
    if table is None or table.num_rows == 0:
        return {}, []
    counts = pc.value_counts(table.column("reason")).to_pylist()
    reasons = {row["values"]: int(row["counts"]) for row in counts}
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1])), table.slice(
        0, examples
    ).to_pylist()


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
