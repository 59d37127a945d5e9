"""Load YAML configs into typed `VaepipeConfig`, apply `--set` overrides, save the resolved one.

Order of precedence: dataclass defaults < YAML files (in the order given) < `--set a.b=v`.
An unknown section or key, or a value of the wrong type, is a `ConfigError` naming it.
YAML is read with `yaml.safe_load`, so a config can never construct Python objects.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from configs.schema import ConfigError, VaepipeConfig

BUILTIN_DIR = Path(__file__).resolve().parent
# Keys whose values never belong in logs or saved configs (matched on the key's last part).
_SECRET_MARKERS = ("password", "secret", "token", "credential", "api_key")
# Floats in exponent form without a dot (1e-3, 2E+5), which YAML 1.1 does not recognise.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def builtin_config_path(name: str) -> Path:
    """Path of a config shipped with the package, e.g. `builtin_config_path("tabular")`."""
    return BUILTIN_DIR / f"{name}.yaml"


def load_config(paths: Iterable[str | Path] = (), overrides: Iterable[str] = ()) -> VaepipeConfig:
    """Resolve defaults, YAML files and `section.key=value` overrides into a validated config."""
    tree: dict[str, Any] = {}
    for path in paths:
        _merge(tree, _read_yaml(Path(path)))
    for item in overrides:
        _merge(tree, parse_override(item))
    config = from_dict(tree)
    config.validate()
    return config


def parse_override(item: str) -> dict[str, Any]:
    """Turn `model.latent_dim=4` into `{"model": {"latent_dim": 4}}` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value. Received: {item!r}")
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set key must be section.key (e.g. model.beta). Received: {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key.strip()}: value is not valid YAML: {raw!r} ({err})") from err
    return {parts[0]: {parts[1]: value}}


def from_dict(tree: Mapping[str, Any]) -> VaepipeConfig:
    """Build a `VaepipeConfig` from nested mappings, checking every key and type."""
    return _build(VaepipeConfig, tree, prefix="")


def to_dict(config: VaepipeConfig) -> dict[str, Any]:
    """The config as plain JSON/YAML-able data, with secret-looking values redacted."""
    return _redact(json.loads(json.dumps(dataclasses.asdict(config))))


def dump_config(config: VaepipeConfig) -> str:
    """The resolved config as YAML text (the record of what a run really used)."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    return "# Resolved vaepipe config (defaults + files + --set)\n" + text


def save_config(config: VaepipeConfig, path: str) -> None:
    """Write the resolved config through Beam's file systems (local or gs://)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(str(path)) as handle:
        handle.write(dump_config(config).encode("utf-8"))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]} (in {where}; valid keys: {sorted(names)})"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check `value` against a field's type hint; lists become tuples, ints may become floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        errors = []
        for arg in args:  # the first type that takes the value (int | str: 8 or "auto")
            try:
                return _coerce(name, value, arg)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list. Received: {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as a string; it is a float
    if hint is str and isinstance(value, datetime.date):
        return value.isoformat()  # YAML reads 2026-11-26 as a date; a text key means the text
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(
            f"{name} must be of type {hint.__name__}. Received: {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _redact(tree: Any, key: str = "") -> Any:
    if isinstance(tree, dict):
        return {k: _redact(v, k) for k, v in tree.items()}
    if any(marker in key.lower() for marker in _SECRET_MARKERS) and tree:
        return "***"
    return tree
