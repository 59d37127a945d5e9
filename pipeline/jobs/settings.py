"""The config a job runs with: for training, the files and overrides given; for a model's
later runs, the config it was trained with, overridden where allowed."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence

from configs import VaepipeConfig, builtin_config_path, load_config

# Where a training run's data came from; never carried over to the model's later runs.
RUN_SPECIFIC = ("bigquery_query", "partition")


def training_config(files: Sequence[str], overrides: Sequence[str]) -> VaepipeConfig:
    """Config files given (or the built-in tabular one), then `section.key=value` overrides."""
    return load_config(local_configs(files) or [builtin_config_path("tabular")], overrides)


def model_config(
    model_dir: str, files: Sequence[str] = (), overrides: Sequence[str] = ()
) -> VaepipeConfig:
    """For a model's later runs: the config it was trained with, unless files are given."""
    if files:
        return load_config(local_configs(files), overrides)
    import yaml

    from configs.loader import from_dict, parse_override
    from pipeline.artifacts.bundle import CONFIG_FILE
    from pipeline.core.fs import read_text

    tree = known_keys(yaml.safe_load(read_text(os.path.join(model_dir, CONFIG_FILE))))
    for key in RUN_SPECIFIC:
        tree.get("data", {}).pop(key, None)
    for item in overrides:
        for section, values in parse_override(item).items():
            tree.setdefault(section, {}).update(values)
    config = from_dict(tree)
    config.validate()
    return config


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
