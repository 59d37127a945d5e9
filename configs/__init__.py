"""vaepipe configuration: typed schema (`configs.schema`), loader (`configs.loader`), YAML files."""

from configs.loader import builtin_config_path, load_config, save_config, to_dict
from configs.schema import ConfigError, VaepipeConfig

__all__ = [
    "ConfigError",
    "VaepipeConfig",
    "builtin_config_path",
    "load_config",
    "save_config",
    "to_dict",
]
