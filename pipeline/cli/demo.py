"""`vaepipe demo`: synthetic data -> train -> score -> decode, with a summary a newcomer can
check, for a table (`--kind tabular`) or a folder of images (`--kind image`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from configs import builtin_config_path, load_config

DEMO_CONFIG = [
    "data.id_column=id",
    "data.exclude_columns=[label]",
    "train.epochs=30",
]
DEMO_ROWS = 20000
# The image demo: a small, quick model (the tests' settings); 5% so that a batch of a few
# hundred normal images shows a measurable flag rate.
DEMO_IMAGE_CONFIG = [
    "train.epochs=15",
    "train.batch_size=32",
    "train.learning_rate=0.003",
    "train.calibration_fraction=0.3",
    "model.hidden_units=[128,32]",
    "model.latent_dim=8",
    "model.kl_warmup_epochs=3",
    "scoring.target_fpr=0.05",
]
DEMO_IMAGES = 600
MIN_DEMO_IMAGES = 100
NORMAL, RING = "stroke", "ring"


def cmd_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Synthetic data -> train -> score -> decode, with a summary a newcomer can check."""
    if args.kind == "image":
        return _image_demo(args, beam_args)
    from pipeline.cli.demo_data import synthetic_table
    from pipeline.jobs.decode import decode
    from pipeline.jobs.score import score
    from pipeline.jobs.train import train

    rows = DEMO_ROWS if args.rows is None else args.rows
    out = os.path.abspath(args.output)
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    train_csv, batch_csv = os.path.join(data_dir, "train.csv"), os.path.join(data_dir, "batch.csv")
    synthetic_table(rows, anomaly_rate=0.01, seed=1).to_csv(train_csv, index=False)
    synthetic_table(max(rows // 4, 1000), anomaly_rate=0.05, seed=2).to_csv(batch_csv, index=False)
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


def _image_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """The same demo on an image folder: the image path (folder input, PNG decoding) is as
    much of vaepipe as the tabular one, and a newcomer should be able to see it work."""
    from pipeline.jobs.decode import decode
    from pipeline.jobs.score import score
    from pipeline.jobs.train import train

    count = DEMO_IMAGES if args.rows is None else args.rows
    if count < MIN_DEMO_IMAGES:
        raise ValueError(f"--rows for --kind image must be at least {MIN_DEMO_IMAGES} images")
    out = os.path.abspath(args.output)
    train_dir, batch_dir = write_demo_images(os.path.join(out, "data", "images"), count)
    print(f"demo data: {train_dir} (training) and {batch_dir} (a folder to score)")
    config = load_config(
        args.config or [builtin_config_path("image")], DEMO_IMAGE_CONFIG + args.set
    )
    model_dir, scores_dir = os.path.join(out, "model"), os.path.join(out, "scores")
    train(train_dir, model_dir, config, beam_args)
    score(model_dir, batch_dir, scores_dir, config, beam_args)
    decode(model_dir, os.path.join(scores_dir, "codes"), os.path.join(out, "decoded"), beam_args)
    _image_demo_summary(scores_dir, out, config.scoring.target_fpr)
    return 0


def write_demo_images(root: str, count: int) -> tuple[str, str]:
    """`count` strokes to train on, and a batch of fresh strokes with a few rings (about one in
    eleven) to score. The folders are emptied first so a rerun with fewer images leaves no
    stale files behind. Returns (train folder, batch folder)."""
    import shutil
    from pathlib import Path

    from pipeline.cli.demo_images import rings, strokes, write_pngs

    train_dir, batch_dir = os.path.join(root, "train"), os.path.join(root, "batch")
    for folder in (train_dir, batch_dir):
        shutil.rmtree(folder, ignore_errors=True)
    write_pngs(Path(train_dir), strokes(count, seed=1), NORMAL)
    write_pngs(Path(batch_dir, "normal"), strokes(max(count // 3, 100), seed=2), NORMAL)
    write_pngs(Path(batch_dir, "rings"), rings(max(count // 30, 10), seed=3), RING)
    return train_dir, batch_dir


def _image_demo_summary(scores_dir: str, out: str, target_fpr: float) -> None:
    """Flag rates by kind, read back from the outputs (the files are what a user would use)."""
    import json

    import pandas as pd

    from pipeline.jobs.score import SUMMARY

    with open(os.path.join(scores_dir, SUMMARY)) as handle:
        counts = json.load(handle)
    flags = pd.read_parquet(os.path.join(scores_dir, "flags"))
    flags["file"] = flags["record_id"].map(os.path.basename)
    ring = flags["file"].str.startswith(f"{RING}-")
    print(
        f"\ndemo summary: {counts['rows_read']} images read = {counts['rows_scored']} scored + "
        f"{counts['rows_dead_lettered']} dead-lettered; flagged "
        f"{flags.loc[~ring, 'is_anomaly'].mean():.1%} of {int((~ring).sum())} held-out normal "
        f"images (target {target_fpr:.1%}) and {flags.loc[ring, 'is_anomaly'].mean():.1%} of "
        f"{int(ring.sum())} anomalies (rings)"
    )
    top = flags.sort_values("score", ascending=False).head(3)
    print(top[["file", "score", "p_value", "top_feature_1"]].to_string(index=False))
    print(
        f"\noutputs in {out}: model/ (bundle), scores/flags, scores/codes, scores/dead_letter, "
        "decoded/images (PNG files rebuilt from the codes), decoded/index (record_id -> PNG)"
    )
