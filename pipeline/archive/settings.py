"""The `compress` settings: the error bound per numeric column and the latent step.

A number x may come back as any x' with |x' - x| <= max(absolute_tolerance,
relative_tolerance * |x|); with both 0 (the default) the archive is lossless, floats to the
bit. `column_tolerances` overrides the bound per column:

    compress:
      relative_tolerance: 0.01
      column_tolerances: {src_bytes: {relative_tolerance: 0.05}, duration: {absolute_tolerance: 1}}

Until the `compress` section is part of `configs.schema` the keys are read from the config
with `getattr` and from `--set compress.KEY=VALUE` overrides (`split_overrides`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import yaml

from configs import ConfigError

SECTION = "compress"
_TOLERANCE_KEYS = ("absolute_tolerance", "relative_tolerance")


@dataclass(frozen=True)
class Tolerance:
    """|x' - x| <= max(absolute, relative * |x|); both 0: bit-exact."""

    absolute: float = 0.0
    relative: float = 0.0

    @property
    def lossless(self) -> bool:
        return self.absolute == 0.0 and self.relative == 0.0


@dataclass(frozen=True)
class CompressSettings:
    """The keys of the `compress` config section (defaults: lossless)."""

    absolute_tolerance: float = 0.0
    relative_tolerance: float = 0.0
    column_tolerances: dict = field(default_factory=dict)
    latent_step: float = 4.0

    def validate(self) -> None:
        _check_tolerance("compress.absolute_tolerance", self.absolute_tolerance, upper=None)
        _check_tolerance("compress.relative_tolerance", self.relative_tolerance, upper=1.0)
        if not (isinstance(self.latent_step, int | float) and 0 < self.latent_step <= 64):
            raise ConfigError(
                "compress.latent_step must be in (0, 64] (the latent quantization step in "
                f"posterior standard deviations). Received: {self.latent_step!r}"
            )
        if not isinstance(self.column_tolerances, Mapping):
            raise ConfigError(
                "compress.column_tolerances must be a mapping {column: {absolute_tolerance: A, "
                f"relative_tolerance: R}}. Received: {self.column_tolerances!r}"
            )
        for column, bound in self.column_tolerances.items():
            where = f"compress.column_tolerances.{column}"
            if not isinstance(bound, Mapping) or not set(bound) <= set(_TOLERANCE_KEYS):
                raise ConfigError(
                    f"{where} must be a mapping with keys among {list(_TOLERANCE_KEYS)}. "
                    f"Received: {bound!r}"
                )
            for key, value in bound.items():
                _check_tolerance(f"{where}.{key}", value, 1.0 if key.startswith("rel") else None)

    def tolerance(self, column: str) -> Tolerance:
        bound = self.column_tolerances.get(column, {})
        return Tolerance(
            float(bound.get("absolute_tolerance", self.absolute_tolerance)),
            float(bound.get("relative_tolerance", self.relative_tolerance)),
        )

    def check_columns(self, numeric_columns: Sequence[str]) -> None:
        unknown = sorted(set(self.column_tolerances) - set(numeric_columns))
        if unknown:
            raise ConfigError(
                f"compress.column_tolerances names columns the model does not code as "
                f"numbers: {unknown} (numeric columns: {list(numeric_columns)})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_tolerance(key: str, value: Any, upper: float | None) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value >= 0 and (upper is None or value < upper)
    if not ok:
        bound = f"[0, {upper:g})" if upper is not None else ">= 0 and finite"
        raise ConfigError(f"{key} must be {bound}. Received: {value!r}")


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(`compress.*` overrides, the others): the config loader refuses a section it does not
    know yet, so the compress keys are applied here (`settings_from`)."""
    ours = [o for o in overrides if o.strip().startswith(f"{SECTION}.")]
    return ours, [o for o in overrides if o not in ours]


def settings_from(config: Any, overrides: Sequence[str] = ()) -> CompressSettings:
    """The config's `compress` section (or the defaults), then `compress.KEY=VALUE` overrides."""
    section = getattr(config, SECTION, None)
    names = [f.name for f in fields(CompressSettings)]
    values = {n: getattr(section, n) for n in names if hasattr(section, n)}
    settings = CompressSettings(**values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        name = key.strip().removeprefix(f"{SECTION}.")
        if not sep or name not in names:
            raise ConfigError(f"unknown config key {key.strip()} (valid keys: {names})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key.strip()}: value is not valid YAML: {raw!r}") from err
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads 1e-3 as text
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool) and name != "column_tolerances":
            value = float(value)
        settings = replace(settings, **{name: value})
    settings.validate()
    return settings
