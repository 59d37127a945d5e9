"""Keyword settings of the Python API -> the config loader's `section.key=value` overrides.

Any config key can be given as a keyword: `latent_dim=4` when the key name is unique across
sections, `train__batch_size=128` (section, two underscores, key) when it is not, or a dict
`settings={"model.latent_dim": 4}`. An unknown or ambiguous name is a ConfigError naming it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from configs import ConfigError, VaepipeConfig


def overrides(settings: Mapping[str, Any]) -> list[str]:
    """`section.key=value` strings for keyword or dotted settings (values as JSON, which the
    loader reads as YAML)."""
    return [f"{_dotted(name)}={json.dumps(_plain(value))}" for name, value in settings.items()]


def _dotted(name: str) -> str:
    if "." in name:
        return name
    if "__" in name:
        section, key = name.split("__", 1)
        return f"{section}.{key}"
    sections = [s for s, keys in _keys().items() if name in keys]
    if len(sections) == 1:
        return f"{sections[0]}.{name}"
    if not sections:
        raise ConfigError(f"unknown setting {name!r}: no config section has a key of that name")
    spelled = " or ".join(f"{s}__{name}" for s in sections)
    raise ConfigError(f"setting {name!r} is a key of several sections: write {spelled}")


def _keys() -> dict[str, set[str]]:
    defaults = VaepipeConfig()
    return {
        f.name: {k.name for k in dataclasses.fields(getattr(defaults, f.name))}
        for f in dataclasses.fields(defaults)
    }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
