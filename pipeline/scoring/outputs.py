"""From score terms to the outputs: flags with attribution, and quantised latent codes.

Attribution: a feature's contribution is its reconstruction NLL minus its median NLL on the
calibration data, i.e. how much worse than usual the model explains that feature for this
record. The top features by contribution are what "drove" a score.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa

from configs.schema import ScoringConfig, VaepipeConfig
from pipeline.core import metrics
from pipeline.core.records import DEAD
from pipeline.scoring.calibration import threshold_for
from pipeline.scoring.core import ScoredChunk

CODE_METADATA_KEY = b"vaepipe.code"
MODEL_FINGERPRINT = "model_sha256"  # in the code metadata: the SHA-256 of the model.keras part
MODEL_PART = "model.keras"  # pipeline.artifacts.bundle.MODEL_FILE
FLAGS, CODES = "flags", "codes"


def p_values(sorted_calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Fraction of calibration scores at or above each score (the calibration sorted ascending)."""
    below = np.searchsorted(sorted_calibration, scores, side="left")
    return (len(sorted_calibration) - below) / len(sorted_calibration)


def flags_schema(top_features: int, passthrough: Sequence[str]) -> pa.Schema:
    fields = [
        ("record_id", pa.string()),
        ("score", pa.float64()),
        ("reconstruction_nll", pa.float64()),
        ("kl", pa.float64()),
        ("p_value", pa.float64()),
        ("is_anomaly", pa.bool_()),
    ]
    for k in range(1, top_features + 1):
        fields += [(f"top_feature_{k}", pa.string()), (f"top_contribution_{k}", pa.float64())]
    fields += [(name, pa.string()) for name in passthrough]
    return pa.schema(fields)


def flags_table(
    record_ids: list[str],
    terms: dict[str, np.ndarray],
    p_values: np.ndarray,
    threshold: float,
    baseline: np.ndarray,
    feature_names: Sequence[str],
    passthrough: pd.DataFrame,
    schema: pa.Schema,
    top_features: int,
) -> pa.Table:
    """The flags of one scored chunk as an Arrow table of `schema`."""
    columns = {
        "record_id": record_ids,
        "score": terms["score"].astype(np.float64),
        "reconstruction_nll": terms["reconstruction_nll"].astype(np.float64),
        "kl": terms["kl"].astype(np.float64),
        "p_value": p_values,
        "is_anomaly": terms["score"] > threshold,
    }
    names, values = top_contributions(terms["feature_nll"], baseline, top_features)
    labels = np.asarray(feature_names, dtype=object)
    for k in range(top_features):
        if k < names.shape[1]:
            columns[f"top_feature_{k + 1}"] = labels[names[:, k]]
            columns[f"top_contribution_{k + 1}"] = values[:, k]
        else:  # the model has fewer features than scoring.top_features: null slots
            columns[f"top_feature_{k + 1}"] = [None] * len(record_ids)
            columns[f"top_contribution_{k + 1}"] = [None] * len(record_ids)
    for name in schema.names[len(columns) :]:
        column = passthrough[name] if name in passthrough.columns else [None] * len(record_ids)
        columns[name] = _as_text(column)
    return pa.Table.from_pydict(columns, schema=schema)


def _as_text(column: Sequence) -> pa.Array:
    """A passthrough column as strings (None stays null), converted in C when it already holds
    only text (a CSV column); other values (numbers from Parquet) are spelled with `str`."""
    values = np.asarray(column, dtype=object)
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def top_contributions(
    feature_nll: np.ndarray, baseline: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest contributions per row (largest first)."""
    contributions = feature_nll - baseline[None, :]
    k = min(k, contributions.shape[1])
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(contributions, order, axis=1)


def quantize(z: np.ndarray, scale: np.ndarray, dtype: str) -> np.ndarray:
    """Latent codes in storage form: int8 steps of `scale` per dimension, or float16/32."""
    if dtype == "int8":
        return np.clip(np.rint(z / scale), -127, 127).astype(np.int8)
    return z.astype(dtype)


def dequantize(code: np.ndarray, scale: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "int8":
        return code.astype(np.float32) * scale.astype(np.float32)
    code = np.asarray(code)
    if dtype == "float16" and code.dtype == np.uint16:  # as stored in Parquet (see codes_schema)
        code = code.view(np.float16)
    return code.astype(np.float32)


def codes_schema(
    latent_dim: int, dtype: str, scale: Sequence[float], model_sha256: str | None = None
) -> pa.Schema:
    """Codes: record_id + a fixed-size list; the metadata carries what dequantises them and
    the fingerprint of the model that wrote them (the SHA-256 of its model.keras), so that
    decoding with another model is refused rather than turned into wrong records.

    Parquet (pyarrow < 15) cannot store half floats, so float16 codes are stored as their
    uint16 bit patterns; `dequantize` reads them back.
    """
    value_type = {"int8": pa.int8(), "float16": pa.uint16(), "float32": pa.float32()}[dtype]
    fields = {"dtype": dtype, "scale": list(scale), "latent_dim": latent_dim}
    if model_sha256 is not None:
        fields[MODEL_FINGERPRINT] = model_sha256
    meta = json.dumps(fields)
    schema = pa.schema([("record_id", pa.string()), ("code", pa.list_(value_type, latent_dim))])
    return schema.with_metadata({CODE_METADATA_KEY: meta.encode()})


def codes_table(record_ids: list[str], code: np.ndarray, schema: pa.Schema) -> pa.Table:
    flat = code.reshape(-1)
    if flat.dtype == np.float16:
        flat = flat.view(np.uint16)
    flat = pa.array(flat, type=schema.field("code").type.value_type)
    lists = pa.FixedSizeListArray.from_arrays(flat, code.shape[1])
    return pa.Table.from_arrays([pa.array(record_ids, pa.string()), lists], schema=schema)


def code_format(schema: pa.Schema) -> dict:
    """The dtype and scale that dequantise codes, read from the codes' Parquet metadata."""
    meta = (schema.metadata or {}).get(CODE_METADATA_KEY)
    if meta is None:
        raise ValueError(
            "these Parquet files carry no vaepipe code metadata: are they the codes/ output "
            "of `vaepipe score`?"
        )
    return json.loads(meta)


@dataclass(frozen=True)
class OutputContext:
    """What turns score terms into flags and codes: the bundle's calibration and the run's
    scoring settings (built once per job, or per `Detector`)."""

    encoding: Any
    calibration_scores: np.ndarray
    threshold: float
    baseline: np.ndarray
    code_scale: np.ndarray
    scoring: ScoringConfig
    flags_schema: pa.Schema
    codes_schema: pa.Schema
    # Where the threshold came from: the bundle's, or re-derived for this run's target_fpr.
    threshold_note: str = ""

    @classmethod
    def from_bundle(cls, bundle: Any, config: VaepipeConfig, encoding: Any = None) -> OutputContext:
        scoring, cal = config.scoring, bundle.calibration
        scale = cal.code_scale
        codes = codes_schema(
            len(scale),
            scoring.code_dtype,
            scale if scoring.code_dtype == "int8" else [],
            model_fingerprint(bundle),
        )
        threshold, note = run_threshold(bundle, scoring.target_fpr)
        return cls(
            encoding=encoding if encoding is not None else bundle.encoding,
            calibration_scores=bundle.calibration_scores,
            threshold=threshold,
            threshold_note=note,
            baseline=np.asarray(cal.feature_baseline),
            code_scale=np.asarray(scale),
            scoring=scoring,
            flags_schema=flags_schema(scoring.top_features, tuple(config.data.exclude_columns)),
            codes_schema=codes,
        )


def run_threshold(bundle: Any, target_fpr: float) -> tuple[float, str]:
    """The threshold for this run's `scoring.target_fpr`, and a note saying where it came from.

    The bundle's threshold when the target is the trained one; else the same quantile rule
    as training (`calibration.threshold_for`) over the bundle's sorted calibration scores, so
    a new false-positive target needs no retraining.
    """
    cal = bundle.calibration
    if target_fpr == cal.target_fpr:
        return float(cal.threshold), f"the model's threshold for scoring.target_fpr {target_fpr}"
    threshold = threshold_for(np.asarray(bundle.calibration_scores), target_fpr)
    note = (
        f"threshold {threshold:.4f} re-derived from the model's {len(bundle.calibration_scores)} "
        f"calibration scores for scoring.target_fpr {target_fpr} (trained with "
        f"{cal.target_fpr}: threshold {cal.threshold:.4f})"
    )
    return threshold, note


def model_fingerprint(bundle: Any) -> str | None:
    """The SHA-256 of the bundle's model part, from its manifest (None when it has none)."""
    manifest = getattr(bundle, "manifest", None) or {}
    return manifest.get("sha256", {}).get(MODEL_PART)


def to_outputs(
    record_ids: list[str],
    terms: dict[str, np.ndarray],
    passthrough: pd.DataFrame,
    ctx: OutputContext,
) -> tuple[pa.Table, pa.Table]:
    """The flags and codes tables of one scored chunk."""
    scores = p_values(ctx.calibration_scores, terms["score"])
    # Contributions per attribution unit (a column; a patch of an image), already relative to
    # the calibration baseline: hence the zero baseline passed on.
    contributions, names = ctx.encoding.contributions(terms["feature_nll"], ctx.baseline)
    flags = flags_table(
        record_ids,
        {**terms, "feature_nll": contributions},
        scores,
        ctx.threshold,
        np.zeros(len(names)),
        names,
        passthrough,
        ctx.flags_schema,
        ctx.scoring.top_features,
    )
    code = quantize(terms["z_mean"], ctx.code_scale, ctx.scoring.code_dtype)
    return flags, codes_table(record_ids, code, ctx.codes_schema)


class ToOutputs(beam.PTransform):
    """ScoredChunks -> flags tables (main), codes tables (`codes`) and dead letters."""

    def __init__(self, ctx: OutputContext):
        super().__init__()
        self._ctx = ctx

    def expand(self, scored):
        return scored | "ToOutputs" >> beam.ParDo(_ToOutputsDoFn(self._ctx)).with_outputs(
            DEAD, CODES, main=FLAGS
        )


class _ToOutputsDoFn(beam.DoFn):
    """Counts rows scored and flagged, as the row accounting needs."""

    def __init__(self, ctx: OutputContext):
        self._ctx = ctx
        self._scored = metrics.counter(metrics.ROWS_SCORED)
        self._flagged = metrics.counter(metrics.ROWS_FLAGGED)
        self._dead = metrics.counter(metrics.ROWS_DEAD_LETTERED)

    def process(self, scored: ScoredChunk) -> Iterator:
        self._dead.inc(len(scored.dead))
        for letter in scored.dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
        chunk, terms = scored.chunk, scored.terms
        if len(chunk) == 0:
            return
        flags, codes = to_outputs(chunk.record_ids, terms, chunk.passthrough, self._ctx)
        self._scored.inc(len(chunk))
        self._flagged.inc(int(np.sum(terms["score"] > self._ctx.threshold)))
        yield flags
        yield beam.pvalue.TaggedOutput(CODES, codes)
