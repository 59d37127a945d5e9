"""`vaepipe report` and `vaepipe sample`: their sub-parsers and what they do.

Wired by the lead: `add_report_parsers(commands)` in `pipeline.cli.parser.build_parser`, and
`cmd_report` / `cmd_sample` in the command table of `pipeline.cli.commands`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_report_parsers(commands) -> None:
    """Adds the `report` and `sample` sub-commands to an argparse sub-parsers object."""
    report = commands.add_parser(
        "report", help="write one self-contained HTML page about a model (and a scored batch)"
    )
    report.add_argument("--model", required=True, help="model bundle directory")
    report.add_argument("--scores", help="the output directory of `vaepipe score` to report on")
    report.add_argument(
        "--output", help="HTML file (default: SCORES/report.html, else MODEL/report.html)"
    )
    report.add_argument(
        "--samples", help="the output of `vaepipe sample` to compare with the training data "
        "(default: draw --sample-rows records now)",
    )  # fmt: skip
    report.add_argument(
        "--sample-rows", type=int, default=2000,
        help="records drawn from the model for the samples section (0: none; default 2000)",
    )  # fmt: skip
    report.add_argument("--seed", type=int, default=0, help="seed of the records drawn")

    sweep = commands.add_parser(
        "sweep", help="train one bundle per value of a config key; compare rate, distortion, "
        "bounds and AUROC on one page",
    )  # fmt: skip
    sweep.add_argument("--config", action="append", default=[], help="YAML config file")
    sweep.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE[,VALUE...]",
        help="one override with a comma-separated list is the key swept (model.beta=0.1,0.3,1); "
        "the others fix one value each",
    )  # fmt: skip
    sweep.add_argument("--input", required=True, help="table to train on (path or glob)")
    sweep.add_argument("--output", required=True, help="folder: one bundle per value, sweep.html")
    sweep.add_argument(
        "--label-column", help="a 0/1 column of the input: the AUROC of each bundle (not modelled)"
    )
    sweep.add_argument("--eval-input", help="records to measure on (default: --input)")

    sample = commands.add_parser(
        "sample", help="draw records from a model: prior codes decoded to the data's form"
    )
    sample.add_argument("--model", required=True, help="model bundle directory")
    sample.add_argument("--rows", type=int, required=True, help="number of records to draw")
    sample.add_argument(
        "--output", required=True,
        help="directory for the records (Parquet; image models: PNG files in images/, an "
        "index in index/)",
    )  # fmt: skip
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    sample.add_argument(
        "--most-likely", action="store_true",
        help="write each code's most likely record instead of a draw from the decoder's "
        "likelihood (flattens the spread and the rare categories)",
    )  # fmt: skip


def cmd_report(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.report.build import write_report

    write_report(
        args.model,
        args.scores,
        args.output,
        samples_dir=args.samples,
        sample_rows=args.sample_rows,
        seed=args.seed,
    )
    return 0


def cmd_sample(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.sample import sample

    sample(args.model, args.rows, args.output, seed=args.seed, likely=args.most_likely)
    return 0


def cmd_sweep(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.jobs.sweep import sweep

    sweep(args.config, args.set, args.input, args.output, args.label_column, args.eval_input)
    return 0
