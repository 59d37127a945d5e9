"""Data kinds: what a kind of record (a table row, an image) needs from the rest of vaepipe.

A kind supplies its reader, its typing, its encoding (records <-> the packed model input,
with the attribution names), how its records are checked before a job and how decoded
records are written. The jobs ask the kind; they never branch on its name. A new kind is one
new module in this package that defines `KIND`, an object with the `DataKind` methods.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from configs import ConfigError, VaepipeConfig


class Encoding(Protocol):
    """Records of one kind <-> the model's packed input `[n, 2 * width]` (values, mask)."""

    @property
    def columns(self) -> list[str]: ...

    @property
    def kinds(self) -> dict[str, str]:
        """The features TFDV profiles and validates, and their column kinds."""

    def layout(self) -> Any: ...

    def encode(self, frame: Any) -> Any: ...

    def decode(self, values: Any) -> Any: ...

    def contributions(self, feature_nll: Any, baseline: Any) -> tuple[Any, list[str]]:
        """Per attribution unit (a column, an image patch): contributions and their names."""

    def to_json(self) -> str: ...


@dataclass(frozen=True)
class Prepared:
    """What a kind's training-data stage leaves in the pipeline."""

    typed: Any  # PCollection of typed RecordChunks
    statistics: Any  # PCollection of one DatasetFeatureStatisticsList (the train split's)
    encoding: Any  # PCollection of one Encoding
    kinds: Any  # the column kinds TFDV profiles (a side input view, or a dict)
    dead: list = field(default_factory=list)  # PCollections of DeadLetters
    columns: Any = None  # PCollection of one {column: {kind, decision, why}} dict, or None
    profiles: Any = None  # PCollection of one {column: ColumnProfile} in input order, or None


class DataKind(Protocol):
    name: str

    def encoding_from_json(self, text: str) -> Encoding: ...

    def check_inputs(self, bundle: Any, input_pattern: str, config: VaepipeConfig) -> list[str]:
        """Driver side, before a job: the inputs exist and fit the model; the paths matched."""

    def prepare(
        self, root: Any, input_pattern: str, config: VaepipeConfig, curated_schema: Any
    ) -> Prepared:
        """Read, type and profile training records; derive the encoding (in the pipeline)."""

    def read_typed(
        self, root: Any, input_pattern: str, encoding: Encoding, config: VaepipeConfig
    ) -> tuple[Any, list]:
        """Read records to score and type them as the model's encoding wants: (typed, dead)."""

    def for_scoring(self, encoding: Encoding, config: VaepipeConfig) -> Encoding:
        """The encoding as a scoring run uses it (run settings that need no retraining)."""

    def decoded_schema(self, encoding: Encoding, columns: Any = None) -> pa.Schema:
        """The decode job's table schema (`columns`: the bundle's record columns, if any)."""

    def decoded_table(
        self,
        encoding: Encoding,
        record_ids: Sequence[str],
        values: Any,
        output_dir: str,
        config: VaepipeConfig | None = None,
        columns: Any = None,
    ) -> pa.Table:
        """Decoded model outputs `[n, width]` as the rows of the decode job's table (writing
        any files a record needs, such as PNGs, under `output_dir`)."""

    def decoded_tables_dir(self, output_dir: str) -> str: ...


def names() -> list[str]:
    """The data kinds this vaepipe knows (one module each in this package)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> DataKind:
    """The data kind called `name` (`data.kind`); a ConfigError lists the known ones."""
    if name not in names():
        raise ConfigError(f"data.kind must be one of {names()}. Received: {name!r}")
    return importlib.import_module(f"{__name__}.{name}").KIND


def load_encoding(kind: str, text: str) -> Encoding:
    """The encoding of data kind `kind` from its JSON form (as stored in a bundle)."""
    return get(kind).encoding_from_json(text)
