"""`vaepipe compress` and `vaepipe decompress`: the error-bounded table archive.

Wired into the parser by `add_archive_parsers(commands)`; `cmd_compress` / `cmd_decompress`
are the handlers `pipeline.cli.main` dispatches to.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

COMPRESS_HELP = (
    "archive a table under the model's likelihood: categories and missing values exact, numbers "
    "within compress.absolute_tolerance / relative_tolerance (default 0: lossless)"
)


def add_archive_parsers(commands) -> None:
    """Add `compress` and `decompress` to the subcommands `commands`."""
    compress = commands.add_parser("compress", help=COMPRESS_HELP)
    _add_config(compress)
    compress.add_argument("--model", required=True, help="model bundle directory")
    compress.add_argument(
        "--input", required=True, help="file pattern of the records (CSV, Parquet, TFRecord)"
    )
    compress.add_argument(
        "--output",
        required=True,
        help="archive directory (blocks/, dead_letter/, archive.json, summary.json)",
    )
    decompress = commands.add_parser(
        "decompress", help="restore an archive's records (Parquet, the original columns)"
    )
    decompress.add_argument("--model", required=True, help="the model the archive was made with")
    decompress.add_argument("--input", required=True, help="archive directory")
    decompress.add_argument(
        "--output", required=True, help="directory for the records (part-*.parquet, in order)"
    )


def cmd_compress(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """The model's config (or --config files), --set overrides; its `compress` section is
    the archive's settings."""
    from pipeline.jobs.compress import compress
    from pipeline.jobs.settings import model_config

    config = model_config(args.model, args.config, args.set)
    compress(args.model, args.input, args.output, config, beam_args)
    return 0


def cmd_decompress(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.decompress import decompress

    result = decompress(args.model, args.input, args.output, beam_args)
    return 0 if result.rows_dead_lettered == 0 else 1


def _add_config(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--config",
        action="append",
        default=[],
        help="YAML config file (default: the config the model was trained with)",
    )
    sub.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. compress.relative_tolerance=0.01; repeatable",
    )
