"""Parquet out: tables of one schema (flags, codes, decoded records) and dead letters."""

from __future__ import annotations

import os

import apache_beam as beam
import pyarrow as pa

from pipeline.core.records import DEAD_LETTER_COLUMNS, DeadLetter


def dead_letter_schema() -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in DEAD_LETTER_COLUMNS])


class WriteDeadLetters(beam.PTransform):
    """DeadLetters -> Parquet files under `directory` (always written, possibly empty)."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, letters):
        return (
            letters
            | "AsRows" >> beam.Map(DeadLetter.as_row)
            | "WriteParquet"
            >> beam.io.WriteToParquet(
                os.path.join(self._directory, "part"),
                dead_letter_schema(),
                file_name_suffix=".parquet",
                num_shards=1,
            )
        )


class WriteTables(beam.PTransform):
    """pyarrow Tables -> Parquet files under `directory` (one schema for all)."""

    def __init__(self, directory: str, schema: pa.Schema, num_shards: int = 0):
        super().__init__()
        self._directory = directory
        self._schema = schema
        self._num_shards = num_shards

    def expand(self, tables):
        return tables | "WriteParquet" >> beam.io.parquetio.WriteToParquetBatched(
            os.path.join(self._directory, "part"),
            self._schema,
            file_name_suffix=".parquet",
            num_shards=self._num_shards,
        )
