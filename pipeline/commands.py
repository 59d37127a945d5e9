"""What each `vaepipe` subcommand does (argument parsing lives in `pipeline.cli`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from configs import VaepipeConfig, builtin_config_path, load_config
from pipeline.bundle import CONFIG_FILE, MANIFEST_FILE

DEMO_CONFIG = [
    "data.id_column=id",
    "data.exclude_columns=[label]",
    "train.epochs=30",
]


def training_config(args: argparse.Namespace) -> VaepipeConfig:
    """Config files given (or the built-in tabular one), then --set overrides."""
    files = args.config or [builtin_config_path("tabular")]
    return load_config(files, args.set)


def model_config(args: argparse.Namespace, model_dir: str) -> VaepipeConfig:
    """For a model's later runs: the config it was trained with, unless files are given."""
    if args.config:
        return load_config(args.config, args.set)
    import yaml

    from configs.loader import from_dict, parse_override
    from pipeline.io import read_text

    tree = yaml.safe_load(read_text(os.path.join(model_dir, CONFIG_FILE)))
    for item in args.set:
        for section, values in parse_override(item).items():
            tree.setdefault(section, {}).update(values)
    config = from_dict(tree)
    config.validate()
    return config


def cmd_train(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.train import train

    train(args.input, args.output, training_config(args), beam_args)
    return 0


def cmd_score(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.score import score

    score(args.model, args.input, args.output, model_config(args, args.model), beam_args)
    return 0


def cmd_decode(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.decode import decode

    decode(args.model, args.input, args.output, beam_args)
    return 0


def cmd_validate(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from pipeline.cli import EXIT_VALIDATION
    from pipeline.score import validate_batch

    config = model_config(args, args.model)
    anomalies = validate_batch(args.model, args.input, args.output, config, beam_args)
    return EXIT_VALIDATION if anomalies and config.schema.on_anomaly == "fail" else 0


def cmd_run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """The scheduled job: train if there is no model (or --retrain), then validate and score."""
    from pipeline.score import score
    from pipeline.train import train

    model_dir = args.model or os.path.join(args.output, "model")
    has_model = FileSystems.exists(os.path.join(model_dir, MANIFEST_FILE))
    if args.retrain or not has_model:
        print("no model bundle yet: training" if not has_model else "--retrain: training")
        train(args.train_input or args.input, model_dir, training_config(args), beam_args)
    else:
        print(f"using the model bundle in {model_dir}")
    scores_dir = os.path.join(args.output, "scores")
    score(model_dir, args.input, scores_dir, model_config(args, model_dir), beam_args)
    return 0


def cmd_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Synthetic data -> train -> score -> decode, with a summary a newcomer can check."""
    from pipeline.decode import decode
    from pipeline.demo_data import synthetic_table
    from pipeline.score import score
    from pipeline.train import train

    out = os.path.abspath(args.output)
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    train_csv, batch_csv = os.path.join(data_dir, "train.csv"), os.path.join(data_dir, "batch.csv")
    synthetic_table(args.rows, anomaly_rate=0.01, seed=1).to_csv(train_csv, index=False)
    synthetic_table(max(args.rows // 4, 1000), anomaly_rate=0.05, seed=2).to_csv(
        batch_csv, index=False
    )
    print(f"demo data: {train_csv} (training) and {batch_csv} (a batch to score)")
    config = load_config(args.config or [builtin_config_path("tabular")], DEMO_CONFIG + args.set)
    model_dir, scores_dir = os.path.join(out, "model"), os.path.join(out, "scores")
    train(train_csv, model_dir, config, beam_args)
    score(model_dir, batch_csv, scores_dir, config, beam_args)
    decode(model_dir, os.path.join(scores_dir, "codes"), os.path.join(out, "decoded"), beam_args)
    _demo_summary(scores_dir, out)
    return 0


def _demo_summary(scores_dir: str, out: str) -> None:
    import pandas as pd

    flags = pd.read_parquet(os.path.join(scores_dir, "flags"))
    labels = flags["label"].astype(int)
    normal_rate = flags.loc[labels == 0, "is_anomaly"].mean()
    caught = flags.loc[labels == 1, "is_anomaly"].mean()
    print(
        f"\ndemo summary: {len(flags)} records scored; flagged {normal_rate:.1%} of normal "
        f"records (target 1.0%) and {caught:.1%} of injected anomalies"
    )
    top = flags.sort_values("score", ascending=False).head(3)
    print(top[["record_id", "score", "p_value", "top_feature_1", "label"]].to_string(index=False))
    print(
        f"\noutputs in {out}: model/ (bundle), scores/flags, scores/codes, scores/dead_letter, "
        "decoded/ (records rebuilt from the codes)"
    )
