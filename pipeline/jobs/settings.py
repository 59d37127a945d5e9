"""The config a job runs with: for training, the files and overrides given; for a model's
later runs, the config it was trained with, with the files and overrides given layered on it
where allowed (settings the model was built with are fixed: a different value is refused)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from configs import ConfigError, VaepipeConfig, builtin_config_path, load_config
from configs.schema import LATENT_AUTO, auto_latent_size

# Where a training run's data came from; never carried over to the model's later runs.
RUN_SPECIFIC = ("bigquery_query", "partition")
# Settings the model was built with: a later run may repeat them but not change them (the
# record ids, the carried columns, the typing, the encoding and the network would no longer
# be the model's). `section.*` fixes a whole section. Reading settings (format, delimiter,
# header) and scoring settings stay free: a batch may arrive in another format.
FIXED_AT_TRAINING = (
    "data.kind",
    "data.id_column",
    "data.exclude_columns",
    "data.categorical_columns",
    "data.numeric_columns",
    "data.numeric_scaling",
    "schema.schema_file",
    "schema.max_vocabulary",
    "schema.int_categorical_max_values",
    "model.*",
    "train.*",
)


def training_config(files: Sequence[str], overrides: Sequence[str]) -> VaepipeConfig:
    """Config files given (or the built-in tabular one), then `section.key=value` overrides."""
    return load_config(local_configs(files) or [builtin_config_path("tabular")], overrides)


def model_config(
    model_dir: str, files: Sequence[str] = (), overrides: Sequence[str] = ()
) -> VaepipeConfig:
    """For a model's later runs: the config it was trained with, then the files and overrides
    given. A setting fixed at training (FIXED_AT_TRAINING) given with another value than the
    trained one is a ConfigError naming it; equal values are accepted."""
    from configs.loader import from_dict

    trained_tree = _trained_tree(model_dir)
    trained = from_dict(trained_tree)
    tree = _copy_tree(trained_tree)
    given: list[tuple[str, str]] = []  # (section.key, where it was given)
    for path, layer in _layers(files, overrides):
        given += [
            (f"{section}.{key}", path)
            for section, values in layer.items()
            if isinstance(values, dict)
            for key in values
        ]
        _merge(tree, layer)
    config = from_dict(tree)
    _refuse_changed(trained, config, given, model_dir)
    config.validate()
    return config


def check_model_settings(config: VaepipeConfig) -> None:
    """Settings only Keras can check, checked before any job starts (a bad name would
    otherwise fail after the data preparation, without naming the key)."""
    import keras

    try:
        keras.activations.get(config.model.activation)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"model.activation must be a Keras activation name (relu, gelu, tanh, ...). "
            f"Received: {config.model.activation!r}"
        ) from err


def _trained_tree(model_dir: str) -> dict:
    import yaml

    from pipeline.artifacts.bundle import CONFIG_FILE, MANIFEST_FILE
    from pipeline.core.errors import BundleError
    from pipeline.core.fs import exists, read_text

    if not exists(os.path.join(model_dir, MANIFEST_FILE)):
        raise BundleError(
            f"{model_dir} is not a model bundle: {MANIFEST_FILE} is missing (give --model the "
            "folder `vaepipe train --output` wrote; an interrupted training leaves none)"
        )
    tree = known_keys(yaml.safe_load(read_text(os.path.join(model_dir, CONFIG_FILE))))
    for key in RUN_SPECIFIC:
        tree.get("data", {}).pop(key, None)
    return tree


def _layers(files: Sequence[str], overrides: Sequence[str]) -> Iterable[tuple[str, dict]]:
    """(where, {section: {key: value}}) for each config file, then each --set, in order."""
    from configs.loader import _read_yaml, parse_override

    for given, local in zip(files, local_configs(files), strict=True):
        yield str(given), _read_yaml(Path(local))
    for item in overrides:
        yield f"--set {item}", parse_override(item)


def _refuse_changed(
    trained: VaepipeConfig, config: VaepipeConfig, given: list[tuple[str, str]], model_dir: str
) -> None:
    changed = []
    for key, where in given:
        if not is_fixed(key) or key in {k for k, _ in changed}:
            continue
        before, after = _value(trained, key), _value(config, key)
        if not _same(key, before, after, model_dir):
            changed.append((key, f"{key} (trained: {_show(before)}; {where}: {_show(after)})"))
    if changed:
        raise ConfigError(
            f"settings fixed at training cannot change for the model in {model_dir}: "
            + "; ".join(text for _, text in changed)
            + ". Leave them out (the model's own values apply) or train a new model"
        )


def _same(key: str, before: Any, after: Any, model_dir: str) -> bool:
    """Equal values, or for `model.latent_dim` the same size: `auto` is the size it gave this
    model (so an older bundle's 8 and today's `auto` on a narrow table agree)."""
    if before == after:
        return True
    if key != "model.latent_dim" or LATENT_AUTO not in (before, after):
        return False
    return _latent_size(before, model_dir) == _latent_size(after, model_dir)


def _latent_size(value: Any, model_dir: str) -> int:
    """`model.latent_dim` as a size for the bundle in `model_dir` (auto: from its features)."""
    import json

    from pipeline.artifacts.bundle import ENCODING_FILE, MANIFEST_FILE
    from pipeline.core.fs import read_text
    from pipeline.kinds import load_encoding

    if value != LATENT_AUTO:
        return int(value)
    kind = json.loads(read_text(os.path.join(model_dir, MANIFEST_FILE)))["data_kind"]
    encoding = load_encoding(kind, read_text(os.path.join(model_dir, ENCODING_FILE)))
    n_features = len(encoding.layout().feature_names)
    return auto_latent_size(n_features)


def is_fixed(key: str) -> bool:
    """Whether `section.key` is fixed at training."""
    section = key.split(".", 1)[0]
    return key in FIXED_AT_TRAINING or f"{section}.*" in FIXED_AT_TRAINING


def _value(config: VaepipeConfig, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(config, section), name)


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _copy_tree(tree: dict) -> dict:
    return {section: dict(values) for section, values in tree.items()}


def _merge(tree: dict, layer: dict) -> None:
    for section, values in layer.items():
        if values is None:  # an empty section in a YAML file
            continue
        if isinstance(values, dict) and isinstance(tree.get(section), dict):
            tree[section].update(values)
        else:
            tree[section] = dict(values) if isinstance(values, dict) else values


def known_keys(tree: dict) -> dict:
    """A bundle's saved config without keys this vaepipe no longer has (dropped, with a note).

    User configs are strict (an unknown key is an error); a bundle written by another version
    may carry a retired key, which must not stop it from scoring.
    """
    defaults = VaepipeConfig()
    out = {}
    for section, values in tree.items():
        if not hasattr(defaults, section):
            print(f"note: ignoring retired config section {section!r} in the model bundle")
            continue
        known = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        for key in sorted(set(values) - known):
            print(f"note: ignoring retired config key {section}.{key} in the model bundle")
        out[section] = {k: v for k, v in values.items() if k in known}
    return out


def local_configs(paths: Sequence[str]) -> list[str]:
    """Config files as local paths: a gs:// one (a Flex Template parameter) is copied first."""
    from pipeline.core.fs import read_bytes

    local = []
    for path in paths:
        if "://" not in str(path):
            local.append(path)
            continue
        handle, name = tempfile.mkstemp(prefix="vaepipe-config-", suffix=".yaml")
        with os.fdopen(handle, "wb") as out:
            out.write(read_bytes(path))
        local.append(name)
    return local
