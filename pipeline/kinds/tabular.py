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
from pipeline.features.column_types import ApplyKindsDoFn, ProfileColumns, decide_kinds
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
        chunks = read.records
        cap = config.schema.int_categorical_max_values
        profiles = chunks | "ProfileColumns" >> beam.CombineGlobally(ProfileColumns(cap))
        if curated_schema is not None:
            kinds = root | "KindsFromSchema" >> beam.Create([kinds_from_schema(curated_schema)])
        else:
            kinds = profiles | "DecideKinds" >> beam.Map(decide_kinds, config.data, cap)
        kinds_view = beam.pvalue.AsSingleton(kinds)
        typed = chunks | "ApplyKinds" >> beam.ParDo(
            ApplyKindsDoFn(config.data.exclude_columns), kinds_view
        ).with_outputs(DEAD, main="typed")
        options = stats_options(config.schema.max_vocabulary, schema=curated_schema)
        stats = typed.typed | "ComputeStatistics" >> ComputeStatistics(kinds_view, options)
        encoding = stats | "DeriveEncoding" >> beam.Map(
            derive_encoding,
            kinds_view,
            beam.pvalue.AsSingleton(profiles),
            config.schema.max_vocabulary,
            config.data.numeric_scaling,
        )
        return Prepared(typed.typed, stats, encoding, kinds_view, [read[DEAD], typed[DEAD]])

    def read_typed(self, root, input_pattern: str, encoding, config: VaepipeConfig):
        exclude = tuple(config.data.exclude_columns)
        read = root | "ReadRecords" >> ReadRecords(input_pattern, config.data)
        typed = read.records | "ApplyKinds" >> beam.ParDo(
            ApplyKindsDoFn(exclude, encoding.kinds)
        ).with_outputs(DEAD, main="typed")
        return typed.typed, [read[DEAD], typed[DEAD]]

    def for_scoring(self, encoding: TabularEncoding, config: VaepipeConfig) -> TabularEncoding:
        return encoding

    def decoded_schema(self, encoding: TabularEncoding) -> pa.Schema:
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
    ) -> pa.Table:
        frame = encoding.decode(values)
        frame.insert(0, "record_id", list(record_ids))
        schema = self.decoded_schema(encoding)
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)

    def decoded_tables_dir(self, output_dir: str) -> str:
        return output_dir


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


def check_columns(bundle, columns: list[str], source: str) -> None:
    """Refuse input that lacks a column the model was trained on (naming file and columns)."""
    missing = [c for c in bundle.encoding.columns if c not in columns]
    if missing:
        raise BundleError(
            f"input {source} does not fit the model in {bundle.directory}: missing columns "
            f"{missing} (the model was trained on {bundle.encoding.columns})"
        )


KIND = TabularKind()
