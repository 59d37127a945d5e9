"""What each `vaepipe` subcommand does: thin calls into `pipeline.jobs` (argument parsing
lives in `pipeline.cli.parser`, the demo in `pipeline.cli.demo`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipeline.cli.archive_commands import cmd_compress, cmd_decompress
from pipeline.cli.demo import cmd_demo
from pipeline.cli.report_commands import cmd_report, cmd_sample, cmd_sweep

# Exit codes (the CLI contract): 0 ok; 2 bad input or config; 3 validation failed (fail policy).
EXIT_BAD_INPUT = 2
EXIT_VALIDATION = 3

__all__ = [
    "cmd_compress",
    "cmd_decompress",
    "cmd_decode",
    "cmd_demo",
    "cmd_report",
    "cmd_run",
    "cmd_sample",
    "cmd_score",
    "cmd_sweep",
    "cmd_train",
    "cmd_validate",
]


def cmd_train(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.settings import check_model_settings, training_config
    from pipeline.jobs.train import train
    from pipeline.jobs.validate import check_output_dir, check_training_inputs

    config = training_config(args.config, args.set)
    # Before the data job: a bad setting or input is one line, not a failure minutes later.
    check_model_settings(config)
    check_output_dir(args.output)
    check_training_inputs(args.input, config)
    train(args.input, args.output, config, beam_args)
    return 0


def cmd_score(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.score import score
    from pipeline.jobs.settings import model_config

    config = model_config(args.model, args.config, args.set)
    score(args.model, args.input, args.output, config, beam_args)
    return 0


def cmd_decode(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.decode import decode
    from pipeline.jobs.settings import model_config

    config = model_config(args.model, args.config, args.set)
    decode(args.model, args.input, args.output, beam_args, config=config)
    return 0


def cmd_validate(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.settings import model_config
    from pipeline.jobs.validate import validate_batch

    config = model_config(args.model, args.config, args.set)
    report = validate_batch(args.model, args.input, args.output, config, beam_args)
    return EXIT_VALIDATION if report.failures(config) else 0


def cmd_run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.run import run_partition

    run_partition(args, beam_args)
    return 0
