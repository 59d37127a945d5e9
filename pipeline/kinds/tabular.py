"""Tables (`data.kind: tabular`): CSV, Parquet, TFRecord or BigQuery rows, one record a row.

Columns are typed by a global profile of the training data (numeric, categorical, integer
categories), profiled by TFDV and encoded by `TabularEncoding`; decoded records are rows of
the original columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from configs import VaepipeConfig
from pipeline.core.errors import BundleError
from pipeline.core.records import DEAD
from pipeline.features.column_types import (
    MODELLED,
    ApplyKindsDoFn,
    ProfileColumns,
    column_decisions,
    modelled_kinds,
)
from pipeline.features.splits import train_rows
from pipeline.features.statistics import ComputeStatistics, kinds_from_schema, stats_options
from pipeline.features.tabular_encoding import TabularEncoding, encoding_from_statistics
from pipeline.kinds import Prepared
from pipeline.sources.files import ReadRecords, input_columns, match_inputs


class TabularKind:
    name = "tabular"

    def encoding_from_json(self, text: str) -> TabularEncoding:
        return TabularEncoding.from_json(text)

    def check_inputs(self, bundle, input_pattern: str, config: VaepipeConfig) -> list[str]:
        paths = match_inputs(input_pattern)
        data = config.data
        for path in paths:
            columns = input_columns(path, data)
            if columns:
                check_columns(bundle, [c for c in columns if c != data.id_column], path)
                if data.id_column and data.id_column not in columns:
                    raise BundleError(f"input {path} has no id column {data.id_column!r}")
        return paths

    def prepare(self, root, input_pattern: str, config: VaepipeConfig, curated_schema) -> Prepared:
        read = root | "ReadRecords" >> ReadRecords(input_pattern, config.data)
        chunks = read["records"]
        cap = config.schema.int_categorical_max_values
        profiles = chunks | "ProfileColumns" >> beam.CombineGlobally(ProfileColumns(cap))
        if curated_schema is not None:
            curated = curated_decisions(kinds_from_schema(curated_schema))
            decisions = root | "KindsFromSchema" >> beam.Create([curated])
        else:
            decisions = profiles | "DecideColumns" >> beam.Map(
                column_decisions, config.data, cap, config.schema
            )
        kinds = decisions | "ModelledKinds" >> beam.Map(modelled_kinds)
        kinds_view = beam.pvalue.AsSingleton(kinds)
        typed = chunks | "ApplyKinds" >> beam.ParDo(
            ApplyKindsDoFn(config.data.exclude_columns), kinds_view
        ).with_outputs(DEAD, main="typed")
        # The encoding (vocabularies, scales) comes from the train split alone: calibration
        # records must be as new to it as a later batch's, or the threshold is too low.
        train = typed.typed | "TrainSplit" >> beam.FlatMap(train_rows, config.train)
        options = stats_options(config.schema.max_vocabulary, schema=curated_schema)
        stats = train | "ComputeStatistics" >> ComputeStatistics(kinds_view, options)
        encoding = stats | "DeriveEncoding" >> beam.Map(
            derive_encoding,
            kinds_view,
            beam.pvalue.AsSingleton(profiles),
            config.schema.max_vocabulary,
            config.data.numeric_scaling,
        )
        dead = [read[DEAD], typed[DEAD]]
        return Prepared(
            typed.typed, stats, encoding, kinds_view, dead, columns=decisions, profiles=profiles
        )

    def read_typed(self, root, input_pattern: str, encoding, config: VaepipeConfig):
        exclude = tuple(config.data.exclude_columns)
        read = root | "ReadRecords" >> ReadRecords(input_pattern, config.data)
        typed = read["records"] | "ApplyKinds" >> beam.ParDo(
            ApplyKindsDoFn(exclude, encoding.kinds)
        ).with_outputs(DEAD, main="typed")
        return typed.typed, [read[DEAD], typed[DEAD]]

    def for_scoring(self, encoding: TabularEncoding, config: VaepipeConfig) -> TabularEncoding:
        return encoding

    def decoded_schema(self, encoding: TabularEncoding, columns=None) -> pa.Schema:
        """`columns` (the bundle's RecordColumns): the id column's name, then the input's
        columns in its order and types. Without (older bundles): `record_id`, the numbers as
        float64, then the categories."""
        if columns is not None:
            fields = [(columns.id_column or "record_id", pa.string())]
            return pa.schema(fields + [(n, _ARROW_TYPES[t]) for n, t in columns.columns])
        fields = [("record_id", pa.string())]
        fields += [(s.name, pa.float64()) for s in encoding.numeric]
        fields += [(s.name, pa.int64() if s.integer else pa.string()) for s in encoding.categorical]
        return pa.schema(fields)

    def decoded_table(
        self,
        encoding: TabularEncoding,
        record_ids: Sequence[str],
        values: np.ndarray,
        output_dir: str,
        config: VaepipeConfig | None = None,
        columns=None,
    ) -> pa.Table:
        frame = encoding.decode(values)
        schema = self.decoded_schema(encoding, columns)
        if columns is not None:
            for name, kind in columns.columns:
                if kind == "int64" and frame[name].dtype.kind == "f":  # integers in training
                    frame[name] = _rounded(frame[name].to_numpy())
        frame.insert(0, schema.names[0], list(record_ids))
        return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)

    def decoded_tables_dir(self, output_dir: str) -> str:
        return output_dir


_ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
_INT64_LIMIT = 2.0**63 - 1024  # the largest float64 below 2**63 that casts to int64 safely


def _rounded(values: np.ndarray) -> np.ndarray:
    """Decoded numbers of an integer column as int64: rounded, clipped to int64's range (an
    extreme code can decode beyond it)."""
    return np.clip(np.rint(values), -_INT64_LIMIT, _INT64_LIMIT).astype(np.int64)


def derive_encoding(
    stats, kinds: dict, profiles: dict, max_vocabulary: int, numeric_scaling: str
) -> TabularEncoding:
    """The encoding from the training statistics, column kinds and profiles."""
    encoding = encoding_from_statistics(stats, kinds, max_vocabulary, numeric_scaling)
    # Integer categories have few values: their vocabulary is the exact set seen in training
    # when TFDV computed no top values for them (it does only when a schema says categorical).
    specs = []
    for spec in encoding.categorical:
        if spec.integer and not spec.vocabulary and spec.name in profiles:
            values = sorted(profiles[spec.name].distinct, key=lambda v: int(float(v)))
            spec = type(spec)(spec.name, tuple(str(int(float(v))) for v in values), True)
        specs.append(spec)
    return TabularEncoding(encoding.numeric, tuple(s for s in specs if s.vocabulary))


def curated_decisions(kinds: dict[str, str]) -> dict[str, dict]:
    """Column decisions when a curated schema gives the kinds: every schema feature modelled."""
    return {
        n: {"kind": k, "decision": MODELLED, "why": "schema.schema_file"} for n, k in kinds.items()
    }


def check_columns(bundle, columns: list[str], source: str) -> None:
    """Refuse input that lacks a column the model was trained on (naming file and columns)."""
    missing = [c for c in bundle.encoding.columns if c not in columns]
    if missing:
        raise BundleError(
            f"input {source} does not fit the model in {bundle.directory}: missing columns "
            f"{missing} (the model was trained on {bundle.encoding.columns})"
        )


KIND = TabularKind()
