"""Typed configuration for vaepipe: nested frozen dataclasses with defaults.

YAML files are applied on top of these defaults, then `--set section.key=value` overrides
(see `configs.loader`). Every field here is documented in `configs/tabular.yaml`, except the
`image` section, documented (with the other keys images need) in `configs/image.yaml`.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass, field

DATA_KINDS = ("tabular", "image")
FORMATS = ("auto", "csv", "parquet", "tfrecord")
ON_ANOMALY = ("warn", "fail")
CODE_DTYPES = ("int8", "float16", "float32")
NUMERIC_VARIANCES = ("record", "feature", "fixed")  # vae_model.model.NUMERIC_VARIANCES
NUMERIC_SCALINGS = ("iqr", "std", "quantile")  # see pipeline/features/tabular_encoding.py
IMAGE_MODES = ("L", "RGB")
IMAGE_LIKELIHOODS = ("bernoulli", "gaussian")
# Members of an ensemble (model.ensemble_size); the bundle names a part per member.
MAX_ENSEMBLE_SIZE = 8
# model.latent_dim: auto sizes the code from the number of feature columns D: one dimension
# per LATENT_FEATURES_PER_DIM columns, within [LATENT_AUTO_MIN, LATENT_AUTO_MAX].
LATENT_AUTO = "auto"
LATENT_FEATURES_PER_DIM = 16
LATENT_AUTO_MIN = 8
LATENT_AUTO_MAX = 32
# File extensions of the formats vaepipe decodes (Pillow's PNG, JPEG, BMP, GIF, TIFF, WebP).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DataConfig:
    """Where records come from and which columns are modelled."""

    kind: str = "tabular"
    format: str = "auto"
    id_column: str | None = None
    exclude_columns: tuple[str, ...] = ()
    column_names: tuple[str, ...] | None = None
    csv_has_header: bool = True
    csv_delimiter: str = ","
    encoding: str = "utf-8"
    categorical_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()
    numeric_scaling: str = "std"
    chunk_rows: int = 4096
    split_bytes: int = 64 << 20
    bigquery_query: str | None = None
    partition: str | None = None

    def validate(self) -> None:
        _check_choice("data.kind", self.kind, DATA_KINDS)
        _check_choice("data.format", self.format, FORMATS)
        _check_choice("data.numeric_scaling", self.numeric_scaling, NUMERIC_SCALINGS)
        _check_positive("data.chunk_rows", self.chunk_rows)
        if type(self.split_bytes) is not int or self.split_bytes < 0:  # bool is not
            raise ConfigError(
                "data.split_bytes must be a whole number of bytes >= 0 (0: never split a file). "
                f"Received: {self.split_bytes!r}"
            )
        if len(self.csv_delimiter) != 1:
            raise ConfigError(
                f"data.csv_delimiter must be one character. Received: {self.csv_delimiter!r}"
            )
        _check_text_encoding("data.encoding", self.encoding)
        if not self.csv_has_header and not self.column_names:
            raise ConfigError("data.column_names is required when data.csv_has_header is false")
        both = set(self.categorical_columns) & set(self.numeric_columns)
        if both:
            raise ConfigError(
                f"columns cannot be both categorical and numeric: {sorted(both)} "
                "(data.categorical_columns, data.numeric_columns)"
            )


def _check_text_encoding(key: str, name: str) -> None:
    """`name` must be a Python text codec (utf-8, cp1252, latin-1, utf-16, ...)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, TypeError):
        info = None
    # A bytes-to-bytes codec (base64, zlib) is found by lookup but decodes no text.
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise ConfigError(
            f"{key} must be the name of a Python text codec (e.g. utf-8, cp1252, latin-1). "
            f"Received: {name!r}"
        )


@dataclass(frozen=True)
class SchemaConfig:
    """Statistics, schema inference and validation (TFDV)."""

    schema_file: str | None = None
    on_anomaly: str = "warn"
    max_vocabulary: int = 1000
    int_categorical_max_values: int = 2
    validation_sample_rate: float = 0.1
    validation_min_rows: int = 400
    drift_js_threshold: float = 0.1
    drift_linf_threshold: float = 0.1
    on_drift: str = "warn"
    drift_p_value: float = 0.001
    identifier_distinct_share: float = 0.2

    def validate(self) -> None:
        _check_choice("schema.on_anomaly", self.on_anomaly, ON_ANOMALY)
        _check_choice("schema.on_drift", self.on_drift, ON_ANOMALY)
        for name in ("drift_js_threshold", "drift_linf_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(
                    f"schema.{name} must be in (0, 1]. Received: {getattr(self, name)}"
                )
        _check_positive("schema.max_vocabulary", self.max_vocabulary)
        if self.int_categorical_max_values < 0:
            raise ConfigError(
                "schema.int_categorical_max_values must be >= 0. "
                f"Received: {self.int_categorical_max_values}"
            )
        _check_fraction(
            "schema.validation_sample_rate", self.validation_sample_rate, allow_one=True
        )
        if isinstance(self.validation_min_rows, bool) or not (
            isinstance(self.validation_min_rows, int) and self.validation_min_rows >= 1
        ):
            raise ConfigError(
                "schema.validation_min_rows must be an integer >= 1 (a chunk of at most this "
                "many rows is schema-checked whole). Received: "
                f"{self.validation_min_rows!r}"
            )
        _check_fraction("schema.drift_p_value", self.drift_p_value)
        _check_fraction(
            "schema.identifier_distinct_share", self.identifier_distinct_share, allow_one=True
        )


def auto_latent_size(n_features: int) -> int:
    """`model.latent_dim: auto` for D = `n_features` columns: D / LATENT_FEATURES_PER_DIM within
    [LATENT_AUTO_MIN, LATENT_AUTO_MAX] (a table of 512 embedding columns does not fit in the 8
    dimensions that serve 6 to 100 columns)."""
    by_width = n_features // LATENT_FEATURES_PER_DIM
    return max(LATENT_AUTO_MIN, min(LATENT_AUTO_MAX, by_width))


@dataclass(frozen=True)
class ModelConfig:
    """The VAE's architecture and the choices that shape its objective."""

    latent_dim: int | str = LATENT_AUTO
    hidden_units: tuple[int, ...] = (128, 64)
    activation: str = "relu"
    beta: float = 1.0
    kl_warmup_epochs: int = 5
    min_log_var: float = -6.0
    max_log_var: float = 6.0
    numeric_variance: str = "record"
    score_tolerance: float = 0.5
    image_likelihood: str = "bernoulli"
    ensemble_size: int = 2
    trim_fraction: float = 0.0
    trim_start_epoch: int | None = None
    member_trim_fraction: float | None = 0.05

    def latent_size(self, n_features: int) -> int:
        """The code's size for `n_features` feature columns: `latent_dim`, or `auto`'s."""
        if self.latent_dim != LATENT_AUTO:
            return int(self.latent_dim)
        return auto_latent_size(n_features)

    def member_trim(self, member: int) -> float:
        """The trim_fraction ensemble member `member` trains with: `trim_fraction` for the
        first, `member_trim_fraction` (where set) for the others."""
        if member == 0 or self.member_trim_fraction is None:
            return self.trim_fraction
        return self.member_trim_fraction

    def validate(self) -> None:
        _check_choice("model.image_likelihood", self.image_likelihood, IMAGE_LIKELIHOODS)
        if self.latent_dim != LATENT_AUTO and (
            not isinstance(self.latent_dim, int) or self.latent_dim <= 0
        ):
            raise ConfigError(
                f"model.latent_dim must be a positive integer or {LATENT_AUTO!r}. "
                f"Received: {self.latent_dim!r}"
            )
        if not 1 <= self.ensemble_size <= MAX_ENSEMBLE_SIZE:
            raise ConfigError(
                f"model.ensemble_size must be an integer from 1 to {MAX_ENSEMBLE_SIZE}. "
                f"Received: {self.ensemble_size}"
            )
        _check_choice("model.numeric_variance", self.numeric_variance, NUMERIC_VARIANCES)
        if not self.hidden_units or any(u <= 0 for u in self.hidden_units):
            raise ConfigError(
                f"model.hidden_units must be positive integers. Received: {list(self.hidden_units)}"
            )
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0. Received: {self.beta}")
        if self.kl_warmup_epochs < 0:
            raise ConfigError(
                f"model.kl_warmup_epochs must be >= 0. Received: {self.kl_warmup_epochs}"
            )
        if self.min_log_var >= self.max_log_var:
            raise ConfigError(
                "model.min_log_var must be below model.max_log_var. "
                f"Received: {self.min_log_var} >= {self.max_log_var}"
            )
        if self.score_tolerance < 0:
            raise ConfigError(
                f"model.score_tolerance must be >= 0. Received: {self.score_tolerance}"
            )
        if not 0 <= self.trim_fraction < 0.5:
            raise ConfigError(
                f"model.trim_fraction must be in [0, 0.5). Received: {self.trim_fraction}"
            )
        if self.member_trim_fraction is not None and not 0 <= self.member_trim_fraction < 0.5:
            raise ConfigError(
                "model.member_trim_fraction must be in [0, 0.5) or null. "
                f"Received: {self.member_trim_fraction}"
            )
        if self.trim_start_epoch is not None and self.trim_start_epoch < 0:
            raise ConfigError(
                f"model.trim_start_epoch must be >= 0 or null. Received: {self.trim_start_epoch}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data splits and checkpoints."""

    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    calibration_fraction: float = 0.1
    early_stopping_patience: int = 40
    seed: int = 0
    on_nonfinite: str = "fail"
    steps_per_execution: int = 1
    min_steps_per_epoch: int = 16
    device_resident: bool = False

    def validate(self) -> None:
        _check_choice("train.on_nonfinite", self.on_nonfinite, ("fail", "skip_batch"))
        _check_positive("train.steps_per_execution", self.steps_per_execution)
        _check_positive("train.min_steps_per_epoch", self.min_steps_per_epoch)
        _check_positive("train.epochs", self.epochs)
        _check_positive("train.batch_size", self.batch_size)
        if self.learning_rate <= 0:
            raise ConfigError(
                f"train.learning_rate must be positive. Received: {self.learning_rate}"
            )
        _check_fraction("train.validation_fraction", self.validation_fraction)
        _check_fraction("train.calibration_fraction", self.calibration_fraction)
        if self.validation_fraction + self.calibration_fraction >= 0.9:
            raise ConfigError(
                "train.validation_fraction + train.calibration_fraction must leave at least 10% "
                f"for training. Received: {self.validation_fraction} + {self.calibration_fraction}"
            )
        _check_positive("train.early_stopping_patience", self.early_stopping_patience)


@dataclass(frozen=True)
class ScoringConfig:
    """Thresholds, attribution and the latent-code format."""

    target_fpr: float = 0.01
    top_features: int = 3
    code_dtype: str = "int8"
    batch_size: int = 4096
    mc_samples: int = 0
    flag_rate_alarm_p: float = 0.001
    iwae_samples: int = 50

    def validate(self) -> None:
        _check_fraction("scoring.target_fpr", self.target_fpr)
        _check_fraction("scoring.flag_rate_alarm_p", self.flag_rate_alarm_p)
        _check_positive("scoring.top_features", self.top_features)
        _check_choice("scoring.code_dtype", self.code_dtype, CODE_DTYPES)
        _check_positive("scoring.batch_size", self.batch_size)
        if self.mc_samples < 0:
            raise ConfigError(f"scoring.mc_samples must be >= 0. Received: {self.mc_samples}")
        _check_positive("scoring.iwae_samples", self.iwae_samples)


@dataclass(frozen=True)
class ImageConfig:
    """How image files become records (used when `data.kind` is `image`)."""

    height: int = 28
    width: int = 28
    mode: str = "L"
    resize: bool = False
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    max_pixels: int = 4096 * 4096
    patch_size: int = 7

    def validate(self) -> None:
        _check_positive("image.height", self.height)
        _check_positive("image.width", self.width)
        _check_choice("image.mode", self.mode, IMAGE_MODES)
        _check_positive("image.max_pixels", self.max_pixels)
        _check_positive("image.patch_size", self.patch_size)
        bad = [e for e in self.extensions if not e.startswith(".") or len(e) < 2]
        if bad:
            raise ConfigError(
                f"image.extensions must look like .png (a dot, then the extension). "
                f"Received: {bad}"
            )
        if self.height * self.width > self.max_pixels:
            raise ConfigError(
                f"image.max_pixels ({self.max_pixels}) is below the model's own image size "
                f"{self.height} x {self.width}"
            )


@dataclass(frozen=True)
class CompressConfig:
    """The table archive (`vaepipe compress`): the error bound of numbers and the latent step.

    A number x may come back as any x' with |x' - x| <= max(absolute_tolerance,
    relative_tolerance * |x|); both 0 (the default): lossless, floats to the bit.
    `column_tolerances` overrides the bound per column, e.g.
    `{src_bytes: {relative_tolerance: 0.05}, duration: {absolute_tolerance: 1}}`.
    `dictionary`: records that compress and decompress both read before every block, so that
    the coder's context models start from what they show (like a zstd dictionary): `training`
    (the training rows the bundle keeps), the path of a table of records, or null (none); the
    archive records its SHA-256. `keep_training_rows` (read by `vaepipe train`): how many of
    the first training records the bundle keeps for it (0: none, a bundle with no raw records).
    """

    absolute_tolerance: float = 0.0
    relative_tolerance: float = 0.0
    column_tolerances: dict = field(default_factory=dict)
    latent_step: float = 8.0
    latent_search: bool = True
    dictionary: str | None = "training"
    keep_training_rows: int = 65_536

    def validate(self) -> None:
        keep = self.keep_training_rows
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigError(
                "compress.keep_training_rows must be a whole number of rows >= 0 (0: the bundle "
                f"keeps no training records). Received: {keep!r}"
            )
        if self.dictionary is not None and not (
            isinstance(self.dictionary, str) and self.dictionary.strip()
        ):
            raise ConfigError(
                "compress.dictionary must be `training` (the rows the bundle keeps), the path "
                "of a table of records (CSV, Parquet, TFRecord) or null. "
                f"Received: {self.dictionary!r}"
            )
        _check_tolerance("compress.absolute_tolerance", self.absolute_tolerance, upper=None)
        _check_tolerance("compress.relative_tolerance", self.relative_tolerance, upper=1.0)
        if not isinstance(self.latent_search, bool):
            raise ConfigError(
                f"compress.latent_search must be true or false. Received: {self.latent_search!r}"
            )
        step = self.latent_step
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 64:
            raise ConfigError(
                "compress.latent_step must be in (0, 64] (the latent quantization step in "
                f"posterior standard deviations). Received: {step!r}"
            )
        if not isinstance(self.column_tolerances, dict):
            raise ConfigError(
                "compress.column_tolerances must be a mapping {column: {absolute_tolerance: A, "
                f"relative_tolerance: R}}. Received: {self.column_tolerances!r}"
            )
        for column, bound in self.column_tolerances.items():
            where = f"compress.column_tolerances.{column}"
            if not isinstance(bound, dict) or not set(bound) <= set(_TOLERANCE_KEYS):
                raise ConfigError(
                    f"{where} must be a mapping with keys among {list(_TOLERANCE_KEYS)}. "
                    f"Received: {bound!r}"
                )
            for key, value in bound.items():
                _check_tolerance(f"{where}.{key}", value, 1.0 if key.startswith("rel") else None)

    def bound(self, column: str) -> tuple[float, float]:
        """(absolute, relative) tolerance of one numeric column (its override, or the
        section's)."""
        own = self.column_tolerances.get(column, {})
        return (
            float(own.get("absolute_tolerance", self.absolute_tolerance)),
            float(own.get("relative_tolerance", self.relative_tolerance)),
        )

    def check_columns(self, numeric_columns) -> None:
        """Refuse per-column bounds for columns the model does not code as numbers."""
        unknown = sorted(set(self.column_tolerances) - set(numeric_columns))
        if unknown:
            raise ConfigError(
                f"compress.column_tolerances names columns the model does not code as "
                f"numbers: {unknown} (numeric columns: {list(numeric_columns)})"
            )


_TOLERANCE_KEYS = ("absolute_tolerance", "relative_tolerance")


def _check_tolerance(key: str, value, upper: float | None) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and value >= 0 and (upper is None or value < upper)
    if not ok:
        bound = f"[0, {upper:g})" if upper is not None else ">= 0 and finite"
        raise ConfigError(f"{key} must be {bound}. Received: {value!r}")


# Data-section keys that describe tables; an image run must leave them at their defaults.
_TABULAR_ONLY = (
    "id_column",
    "exclude_columns",
    "column_names",
    "categorical_columns",
    "numeric_columns",
    "bigquery_query",
)


@dataclass(frozen=True)
class VaepipeConfig:
    """The whole resolved configuration of one run."""

    data: DataConfig = field(default_factory=DataConfig)
    schema: SchemaConfig = field(default_factory=SchemaConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)

    def validate(self) -> None:
        sections = (self.data, self.schema, self.model, self.train, self.scoring, self.image)
        for section in (*sections, self.compress):
            section.validate()
        if self.data.kind == "image":
            _check_image_data(self.data)
        overlap = set(self.data.exclude_columns) & (
            set(self.data.categorical_columns) | set(self.data.numeric_columns)
        )
        if overlap:
            raise ConfigError(
                f"excluded columns cannot also be modelled: {sorted(overlap)} "
                "(data.exclude_columns vs data.categorical_columns/numeric_columns)"
            )


def _check_image_data(data: DataConfig) -> None:
    """Table settings have no meaning for images (the record id is the file path): say so
    rather than ignore them."""
    defaults = DataConfig()
    for name in _TABULAR_ONLY:
        if getattr(data, name) != getattr(defaults, name):
            raise ConfigError(
                f"data.{name} applies to tables only; with data.kind image each file is one "
                f"record whose id is its path. Received: {getattr(data, name)!r}"
            )
    if data.format != "auto":
        raise ConfigError(
            "data.format must be auto with data.kind image (Pillow tells the image format "
            f"from the file's content). Received: {data.format!r}"
        )


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or out of range; the message names it."""


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}. Received: {value!r}")


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive. Received: {value}")


def _check_fraction(name: str, value: float, allow_one: bool = False) -> None:
    if not (0 < value < 1 or (allow_one and value == 1)):
        bounds = "(0, 1]" if allow_one else "(0, 1)"
        raise ConfigError(f"{name} must be in {bounds}. Received: {value}")
