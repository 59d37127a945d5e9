"""The model bundle: one directory holding everything scoring and decoding need.

    MODEL_DIR/
      model.keras          the VAE (loads with safe_mode=True; no pickles anywhere)
      encoding.json        how records (columns, or image pixels) map to the model input and back
      schema.pbtxt         TFDV schema every scoring batch is validated against
      statistics.pb        TFDV training statistics (for drift comparison and reports)
      calibration.json     threshold, target FPR, code quantisation, per-feature baselines
      calibration_scores.npy  sorted calibration scores (p-values), loaded with allow_pickle=False
      config.yaml          the resolved config of the training run
      training_report.json per-epoch ELBO terms, rows per split
      record_columns.json  (optional; tables) the input's id column and modelled columns in input
                           order with the type each decodes to; bundles without it decode
                           numbers first, then categories, ids as record_id
      archive_dictionary.parquet  (optional; tables) the first training records' modelled
                           columns, the dictionary of `vaepipe compress` (compress.dictionary:
                           training); absent when compress.keep_training_rows is 0
      model_member_K.keras (optional) ensemble members 1.. (model.ensemble_size > 1): scoring
                           averages every member's terms; codes and decoding are model.keras's
      manifest.json        data kind, package versions and a SHA-256 of every part (written last)

Loading checks the manifest: a missing part, a part whose hash changed, or a bundle from an
incompatible format version is refused with a message naming it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from configs.schema import MAX_ENSEMBLE_SIZE
from pipeline.core.errors import BundleError
from pipeline.core.fs import read_bytes, read_text, write_bytes, write_text
from pipeline.core.records import CATEGORICAL, INT_CATEGORICAL
from pipeline.kinds import Encoding, load_encoding

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
ENCODING_FILE = "encoding.json"
SCHEMA_FILE = "schema.pbtxt"
STATISTICS_FILE = "statistics.pb"
CALIBRATION_FILE = "calibration.json"
SCORES_FILE = "calibration_scores.npy"
CONFIG_FILE = "config.yaml"
REPORT_FILE = "training_report.json"
COLUMNS_FILE = "record_columns.json"
DICTIONARY_FILE = "archive_dictionary.parquet"
MANIFEST_FILE = "manifest.json"
PARTS = (
    MODEL_FILE,
    ENCODING_FILE,
    SCHEMA_FILE,
    STATISTICS_FILE,
    CALIBRATION_FILE,
    SCORES_FILE,
    CONFIG_FILE,
    REPORT_FILE,
)
# Parts a bundle may have: hashed into the manifest when present, loaded when the manifest
# names them (older bundles lack them).
MEMBER_FILES = tuple(f"model_member_{k}.keras" for k in range(1, MAX_ENSEMBLE_SIZE))
OPTIONAL_PARTS = (COLUMNS_FILE, DICTIONARY_FILE, *MEMBER_FILES)
# The types decoded table columns come back as.
INT64, FLOAT64, STRING = "int64", "float64", "string"
_PACKAGES = ("vaepipe", "keras", "tensorflow", "apache-beam", "tensorflow-data-validation")


@dataclass(frozen=True)
class Calibration:
    """What scoring needs beyond the model: threshold, baselines, code quantisation."""

    target_fpr: float
    threshold: float
    feature_baseline: tuple[float, ...]
    code_scale: tuple[float, ...]
    n_calibration: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        data["feature_baseline"] = tuple(data["feature_baseline"])
        data["code_scale"] = tuple(data["code_scale"])
        return cls(**data)


@dataclass(frozen=True)
class RecordColumns:
    """A table's columns as decoded records give them back: the id column's name (None: the
    ids were `<file>:<line>`, decoded as `record_id`) and the modelled columns in input order,
    each with the type it decodes to (`int64` for numbers that were all integers in training
    and integer categories, `float64` for other numbers, `string` for categories)."""

    id_column: str | None
    columns: tuple[tuple[str, str], ...]

    def to_json(self) -> str:
        data = {"id_column": self.id_column, "columns": [list(c) for c in self.columns]}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RecordColumns:
        data = json.loads(text)
        return cls(data["id_column"], tuple((str(n), str(t)) for n, t in data["columns"]))


def record_columns(profiles: Any, kinds: dict[str, str], id_column: str | None) -> RecordColumns:
    """The COLUMNS_FILE part from training's column profiles and kinds.

    `profiles`: `pipeline.features.column_types.ProfileColumns`' output, a mapping of column
    name -> ColumnProfile in the order the columns were first read (the input's order; the id
    column is not among them). Modelled columns the profiles lack (a curated schema may name
    them) come last, sorted.
    """
    order = [name for name in profiles if name in kinds]
    order += sorted(name for name in kinds if name not in profiles)
    return RecordColumns(
        id_column, tuple((n, _decoded_type(kinds[n], profiles.get(n))) for n in order)
    )


def _decoded_type(kind: str, profile: Any) -> str:
    if kind == INT_CATEGORICAL:
        return INT64
    if kind in (CATEGORICAL, "boolean"):
        return STRING
    whole = profile is not None and profile.present > 0
    whole = whole and profile.non_numeric == 0 and profile.non_integer == 0
    return INT64 if whole else FLOAT64


@dataclass
class Bundle:
    """A loaded, verified model bundle."""

    directory: str
    model: Any
    encoding: Encoding
    schema: schema_pb2.Schema
    statistics: statistics_pb2.DatasetFeatureStatisticsList
    calibration: Calibration
    calibration_scores: np.ndarray
    manifest: dict
    columns: RecordColumns | None = None  # None for bundles written before COLUMNS_FILE
    members: tuple[Any, ...] = ()  # ensemble members after `model` (MEMBER_FILES)

    @functools.cached_property
    def scorer(self) -> Any:
        """What scores records: `model`, or the ensemble of `model` and `members`."""
        if not self.members:
            return self.model
        from vae_model.ensemble import VAEEnsemble

        return VAEEnsemble([self.model, *self.members])


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def write_part(directory: str, name: str, data: bytes) -> None:
    write_bytes(os.path.join(directory, name), data)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_manifest(directory: str, data_kind: str) -> dict:
    """Hash every part and write the manifest last: a bundle without one is incomplete."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "data_kind": data_kind,
        "versions": package_versions(),
        "sha256": {name: _sha256(os.path.join(directory, name)) for name in parts_in(directory)},
    }
    write_text(os.path.join(directory, MANIFEST_FILE), json.dumps(manifest, indent=1))
    return manifest


def parts_in(directory: str) -> list[str]:
    """The parts a bundle being written has: every one of PARTS, and the optional ones there."""
    optional = [n for n in OPTIONAL_PARTS if FileSystems.exists(os.path.join(directory, n))]
    return [*PARTS, *optional]


def load_bundle(directory: str, load_model: bool = True) -> Bundle:
    """Load and verify a bundle; raises BundleError naming what is wrong."""
    manifest = _verified_manifest(directory)
    calibration = Calibration.from_json(read_text(os.path.join(directory, CALIBRATION_FILE)))
    scores = np.load(
        io.BytesIO(read_bytes(os.path.join(directory, SCORES_FILE))), allow_pickle=False
    )
    encoding = load_encoding(
        manifest["data_kind"], read_text(os.path.join(directory, ENCODING_FILE))
    )
    schema = text_format.Parse(read_text(os.path.join(directory, SCHEMA_FILE)), schema_pb2.Schema())
    statistics = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        read_bytes(os.path.join(directory, STATISTICS_FILE))
    )
    _check_consistent(encoding, schema, calibration)
    columns = None
    if COLUMNS_FILE in manifest["sha256"]:
        columns = RecordColumns.from_json(read_text(os.path.join(directory, COLUMNS_FILE)))
        _check_columns(columns, encoding)
    model, members = None, ()
    if load_model:
        model = load_model_file(os.path.join(directory, MODEL_FILE))
        names = [n for n in MEMBER_FILES if n in manifest["sha256"]]
        members = tuple(load_model_file(os.path.join(directory, n)) for n in names)
    return Bundle(
        directory,
        model,
        encoding,
        schema,
        statistics,
        calibration,
        scores,
        manifest,
        columns,
        members,
    )


def save_without_optimizer(model: Any, path: str) -> None:
    """Save `model` without its optimizer's state.

    A bundle's readers score, encode, decode and compress. None of them needs Adam's moment
    estimates, which are twice the size of the weights (a 20-column model's file drops from
    413 KB to 156 KB). A loaded bundle is for inference: training starts from a new model.
    """
    optimizer = getattr(model, "optimizer", None)  # a loaded, uncompiled model has none
    model.optimizer = None
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def write_bundle(
    model: Any,
    model_dir: str,
    parts: dict[str, bytes],
    data_kind: str,
    local: str,
    members: tuple[Any, ...] = (),
):
    """Write every part, then the manifest: a bundle without one is incomplete.

    `model` (and each ensemble member after it) is saved through the local folder `local`
    (Keras writes local files) and copied to `model_dir`, which may be on gs://. An old
    bundle's manifest is removed first, so the old bundle stays invalid until the new one is
    whole.
    """
    if len(members) > len(MEMBER_FILES):
        raise ValueError(f"a bundle holds at most {MAX_ENSEMBLE_SIZE} ensemble members")
    parts = dict(parts)
    for name, member in zip(MEMBER_FILES, members, strict=False):
        parts[name] = _saved(member, os.path.join(local, name))
    local_model = os.path.join(local, MODEL_FILE)
    save_without_optimizer(model, local_model)
    manifest_path = os.path.join(model_dir, MANIFEST_FILE)
    if FileSystems.exists(manifest_path):
        FileSystems.delete([manifest_path])
    for name in OPTIONAL_PARTS:
        if name not in parts and FileSystems.exists(os.path.join(model_dir, name)):
            FileSystems.delete([os.path.join(model_dir, name)])
    with open(local_model, "rb") as handle:
        write_part(model_dir, MODEL_FILE, handle.read())
    for name, data in parts.items():
        write_part(model_dir, name, data)
    return write_manifest(model_dir, data_kind)


def _saved(model: Any, path: str) -> bytes:
    save_without_optimizer(model, path)
    with open(path, "rb") as handle:
        return handle.read()


def _verified_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST_FILE)
    if not FileSystems.exists(path):
        raise BundleError(
            f"{directory} is not a complete model bundle: {MANIFEST_FILE} is missing "
            "(was training interrupted, or is this the wrong directory?)"
        )
    manifest = json.loads(read_text(path))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle {directory} has format version {manifest.get('format_version')}, "
            f"this vaepipe reads version {FORMAT_VERSION}; retrain or use a matching vaepipe"
        )
    for name, expected in manifest["sha256"].items():
        part = os.path.join(directory, name)
        if not FileSystems.exists(part):
            raise BundleError(f"bundle {directory} is missing its part {name}")
        if _sha256(part) != expected:
            raise BundleError(
                f"bundle part {name} in {directory} was changed after training "
                "(its SHA-256 does not match the manifest); refusing to score with it"
            )
    return manifest


def _check_consistent(encoding: Encoding, schema, calibration: Calibration) -> None:
    in_schema = {f.name for f in schema.feature}
    # The features TFDV validates: the encoded columns of a table, per-image features of images.
    missing = [c for c in encoding.kinds if c not in in_schema]
    if missing:
        raise BundleError(
            f"bundle is inconsistent: encoded columns {missing} are not in its schema"
        )
    if len(calibration.feature_baseline) != len(encoding.columns):
        raise BundleError(
            "bundle is inconsistent: calibration has "
            f"{len(calibration.feature_baseline)} feature baselines for "
            f"{len(encoding.columns)} encoded columns"
        )


def _check_columns(columns: RecordColumns, encoding: Encoding) -> None:
    names = sorted(n for n, _ in columns.columns)
    if names != sorted(encoding.columns):
        raise BundleError(
            f"bundle is inconsistent: {COLUMNS_FILE} lists columns {names} but the encoding "
            f"models {sorted(encoding.columns)}"
        )
    bad = sorted({t for _, t in columns.columns} - {INT64, FLOAT64, STRING})
    if bad:
        raise BundleError(f"bundle is inconsistent: {COLUMNS_FILE} has unknown types {bad}")


def load_model_file(path: str) -> Any:
    """A saved VAE (a bundle's model part, or a training checkpoint), local or gs://."""
    import keras

    # The module itself: `vae_model` loads its names lazily, and only importing the model
    # module registers the VAE class for deserialisation.
    import vae_model.model  # noqa: F401

    if path.startswith("gs://"):  # Keras loads local files: copy the verified part first
        local = os.path.join(tempfile.mkdtemp(prefix="vaepipe-"), MODEL_FILE)
        with open(local, "wb") as handle:
            handle.write(read_bytes(path))
        path = local
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
