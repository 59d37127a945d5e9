"""Speed and size of the archive coder alone (`pipeline.archive.api`, the Python API's path:
compress includes the check that decodes every block) on NSL-KDD's 30% test rows.

Trains the archive preset once (benchmarks/archive.py's model and split) into `--work` and
reuses it; then, per case (relative tolerance, with or without the training rows as
`compress.dictionary`), compresses and decompresses best of `--repeats`, checks every
restored value against the CSV's text, and prints bytes per record (the blocks' payloads)
and CSV MB/s.

    python benchmarks/archive_coder_speed.py [--work /tmp/arch_a] [--repeats 3]
        [--cases 0.01 0 0.01d] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
from archive import PRESET, nsl_kdd_split, worst_error
from common import SHARED_DATA, log, machine, run_vaepipe, set_args


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """(model folder, train CSV, test CSV), training only when the model is not there yet."""
    work.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv, model = work / "train.csv", work / "test.csv", work / "model"
    if not test_csv.exists():
        train, test = nsl_kdd_split(SHARED_DATA / "nsl_kdd")
        train.to_csv(train_csv, index=False)
        test.to_csv(test_csv, index=False)
    if not (model / "model.keras").exists():
        log(f"training the archive preset into {model}")
        run_vaepipe(["train", "--input", str(train_csv), "--output", str(model)]
                    + set_args(PRESET))  # fmt: skip
    return model, train_csv, test_csv


def case(model: Path, test_csv: Path, tolerance: float, dictionary: Path | None, repeats: int):
    from pipeline.archive.api import compress_frame, decompress_archive
    from pipeline.artifacts.bundle import load_bundle
    from pipeline.jobs.settings import model_config

    overrides = [f"compress.relative_tolerance={tolerance}", "data.chunk_rows=65536"]
    if dictionary:
        overrides.append(f"compress.dictionary={dictionary}")
    bundle, config = load_bundle(str(model)), model_config(str(model), (), overrides)
    frame = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    compress_s, decompress_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        archive = compress_frame(bundle, frame, config)
        middle = time.perf_counter()
        restored = decompress_archive(bundle, archive, config)
        compress_s.append(middle - started)
        decompress_s.append(time.perf_counter() - middle)
    worst = worst_error(frame, restored.reset_index(drop=True), tolerance)
    megabytes = test_csv.stat().st_size / 1e6
    return {
        "tolerance": tolerance, "dictionary": bool(dictionary), "rows": archive.rows,
        "bytes": archive.nbytes, "bytes_per_record": archive.nbytes / archive.rows,
        "bits": archive.bits_per_record(), "worst": worst,
        "compress_s": min(compress_s), "decompress_s": min(decompress_s),
        "compress_mb_s": megabytes / min(compress_s),
        "decompress_mb_s": megabytes / min(decompress_s),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/arch_a"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=["0.01", "0", "0.01d"],
                        help="relative tolerances; a trailing d: with the dictionary")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model, train_csv, test_csv = prepare(args.work)
    log(machine())
    log(f"load average {os.getloadavg()}")
    results = []
    for spec in args.cases:
        tolerance = float(spec.rstrip("d"))
        primed = train_csv if spec.endswith("d") else None
        r = case(model, test_csv, tolerance, primed, args.repeats)
        results.append(r)
        print(
            f"tol {tolerance:g} dict {r['dictionary']!s:5}: {r['bytes_per_record']:.4f} B/rec "
            f"({r['bytes']} B), compress {r['compress_s']:.2f} s = {r['compress_mb_s']:.3f} "
            f"MB/s, decompress {r['decompress_s']:.2f} s = {r['decompress_mb_s']:.3f} MB/s, "
            f"worst rel. err. {r['worst']:.4g}",
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    log(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
