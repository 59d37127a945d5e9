"""`vaepipe` command line: parse, quiet the libraries, run the command, map errors to exit codes.

Our flags are parsed here; every flag we do not know goes to Beam's PipelineOptions
(`--runner`, `--direct_num_workers`, `--project`, ...), so the same command runs on the
DirectRunner and on Dataflow.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipeline.cli.commands import EXIT_BAD_INPUT, EXIT_VALIDATION
from pipeline.cli.console import quiet_libraries
from pipeline.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    quiet_libraries()
    from configs import ConfigError
    from pipeline.core.errors import BundleError
    from pipeline.jobs.validate import ValidationFailed

    try:
        return _dispatch(args, beam_args)
    except (ConfigError, BundleError, FileNotFoundError, ValueError) as err:
        print(f"vaepipe {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationFailed as err:
        print(f"vaepipe {args.command}: {err}", file=sys.stderr)
        return EXIT_VALIDATION


def _dispatch(args, beam_args: list[str]) -> int:
    from pipeline.cli import commands

    handler = getattr(commands, f"cmd_{args.command}")
    return handler(args, beam_args)


if __name__ == "__main__":
    sys.exit(main())
