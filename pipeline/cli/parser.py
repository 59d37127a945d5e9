"""The `vaepipe` argument parser: train | score | decode | validate | run | demo.

Our flags are parsed here; every flag we do not know goes to Beam's PipelineOptions
(`--runner`, `--direct_num_workers`, `--project`, ...), so the same command runs on the
DirectRunner and on Dataflow.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from pipeline.cli.archive_commands import add_archive_parsers
from pipeline.cli.report_commands import add_report_parsers

INPUT_HELP = (
    "file pattern (path, glob, gs://), a folder of images (data.kind image), "
    "bq://PROJECT.DATASET.TABLE or bq://query"
)
# Set in the Dataflow image (deploy/Dockerfile): the image's own name, used for the workers.
IMAGE_VARIABLE = "VAEPIPE_SDK_CONTAINER_IMAGE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaepipe",
        description="Compress tables or images to latent codes and flag anomalous records with "
        "a VAE (Apache Beam + TFDV + Keras). Unknown flags are passed to Beam (e.g. --runner).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="fit a model bundle on a table of normal records")
    _add_config(train)
    train.add_argument("--input", required=True, help=INPUT_HELP)
    train.add_argument("--output", required=True, help="model bundle directory to write")

    score = commands.add_parser("score", help="score records: flags, latent codes, dead letters")
    _add_config(score, "default: the config the model was trained with")
    score.add_argument("--model", required=True, help="model bundle directory")
    score.add_argument("--input", required=True, help=INPUT_HELP)
    score.add_argument("--output", required=True, help="output directory (flags/, codes/, ...)")

    decode = commands.add_parser("decode", help="turn latent codes back into records")
    _add_config(decode)
    decode.add_argument("--model", required=True, help="model bundle directory")
    decode.add_argument("--input", required=True, help="the codes/ directory of a score run")
    decode.add_argument(
        "--output",
        required=True,
        help="directory for decoded Parquet records (image models: PNG files in images/, "
        "an index in index/)",
    )

    validate = commands.add_parser("validate", help="check a batch against the model's schema")
    _add_config(validate, "default: the config the model was trained with")
    validate.add_argument("--model", required=True, help="model bundle directory")
    validate.add_argument("--input", required=True, help=INPUT_HELP)
    validate.add_argument("--output", help="where to write the TFDV statistics and report")

    run = commands.add_parser("run", help="the scheduled job: validate, train if needed, score")
    _add_config(run)
    _add_run_arguments(run)

    demo = commands.add_parser(
        "demo", help="train and score on a built-in synthetic table (or images: --kind image)"
    )
    _add_config(demo, "default: the built-in config of --kind")
    demo.add_argument(
        "--output", default="vaepipe_output", help="demo directory " "(default: ./vaepipe_output)"
    )
    demo.add_argument(
        "--kind",
        choices=("tabular", "image"),
        default="tabular",
        help="tabular: a mixed-type table; image: 28 x 28 grey pen strokes (normal) and rings "
        "(anomalies), decoded back to PNG files (default: tabular)",
    )
    demo.add_argument(
        "--rows",
        type=int,
        help="records of synthetic training data (default: 20000 rows, or 600 images)",
    )
    add_report_parsers(commands)
    add_archive_parsers(commands)
    return parser


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    # Flags a Flex Template passes (deploy/metadata.json) also have an underscore spelling:
    # template parameter names are identifiers.
    run.add_argument("--input", required=True, help=f"the batch to score: {INPUT_HELP}")
    run.add_argument(
        "--train-input", help="data to train on when there is no model (default: --input)"
    )
    run.add_argument("--output", required=True, help="job root: model/ and scores/ go here")
    run.add_argument("--model", help="model bundle directory (default: OUTPUT/model)")
    run.add_argument("--retrain", action="store_true", help="train even if a model exists")
    run.add_argument(
        "--partition",
        help="the slice this run handles: a date (2026-11-26), today or yesterday (UTC), or a "
        "name; fills {partition} in the inputs and data.bigquery_query; scores go to "
        "OUTPUT/scores/partition=VALUE/ (default: data.partition)",
    )
    run.add_argument(
        "--bigquery-output",
        "--bigquery_output",
        dest="bigquery_output",
        metavar="bq://PROJECT.DATASET",
        help="write flags, codes and dead letters to day-partitioned tables of this dataset "
        "(the run's day is replaced) instead of Parquet under OUTPUT/scores",
    )
    run.add_argument(
        "--no-wait",
        "--no_wait",
        dest="no_wait",
        action="store_true",
        help="start the scoring job and return (a Flex Template's launcher must); needs a "
        "trained model and --bigquery-output",
    )


def flex_template_argv(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The Flex Template launcher's arguments as a `vaepipe run --no-wait` command line.

    The launcher submits the job only after our program exits, so the program must not wait
    (--no-wait). Workers run the image the launcher runs in, unless the launch names another.
    """
    args = ["run", "--no-wait", *argv]
    image = environ.get(IMAGE_VARIABLE)
    if image and not any(a.startswith("--sdk_container_image") for a in argv):
        args.append(f"--sdk_container_image={image}")
    return args


def _add_config(sub: argparse.ArgumentParser, default_note: str = "") -> None:
    note = f" ({default_note})" if default_note else " (default: the built-in tabular config)"
    sub.add_argument("--config", action="append", default=[], help="YAML config file" + note)
    sub.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value; repeatable",
    )
