"""Helpers shared by the benchmark scripts: run vaepipe's real CLI, read its outputs, describe
the machine, print tables.

The scripts import this module as `common` (Python puts the script's folder first on the path),
so each one still runs as `python benchmarks/NAME.py`.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TABULAR_CONFIG = ROOT / "configs" / "tabular.yaml"
CLI = (sys.executable, "-m", "pipeline.cli")

# In-process imports of the product (speed.py, compression.py) must see the same tree that the
# CLI subprocesses run from (`python -m` puts ROOT first), also when ROOT is a snapshot copy.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def feature_names(width: int) -> list[str]:
    """Column names f0..f{width-1} for an unnamed numeric matrix."""
    return [f"f{j}" for j in range(width)]


def write_matrix_csv(x: np.ndarray, path: Path, ids: np.ndarray | None = None) -> pd.DataFrame:
    """Write `x` as a CSV with an `id` column then f0..fN (dtypes kept); returns the frame."""
    frame = pd.DataFrame(x, columns=feature_names(x.shape[1]))
    frame.insert(0, "id", np.arange(len(frame)) if ids is None else ids)
    frame.to_csv(path, index=False)
    return frame


def set_args(overrides: Sequence[str]) -> list[str]:
    """`--set a=b` pairs for the CLI."""
    return [arg for item in overrides for arg in ("--set", item)]


def run_vaepipe(args: Sequence[str], extra_env: dict | None = None) -> float:
    """Run `vaepipe ARGS` in a subprocess (as a user would); returns wall seconds.

    Raises RuntimeError with the tail of stderr when the command fails.
    """
    command = [*CLI, *args]
    env = {**os.environ, **(extra_env or {})}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return seconds


def vaepipe_train(
    input_csv: Path, model_dir: Path, overrides: Sequence[str], config: Path = TABULAR_CONFIG
) -> float:
    """`vaepipe train` with `config` plus `--set` overrides; returns wall seconds."""
    args = ["train", "--config", str(config), "--input", str(input_csv), "--output", str(model_dir)]
    return run_vaepipe(args + set_args(overrides))


def vaepipe_score(
    model_dir: Path, input_csv: Path, out_dir: Path, overrides: Sequence[str] = ()
) -> float:
    """`vaepipe score`; returns wall seconds."""
    args = ["score", "--model", str(model_dir), "--input", str(input_csv), "--output", str(out_dir)]
    return run_vaepipe(args + set_args(overrides))


def vaepipe_decode(model_dir: Path, codes_dir: Path, out_dir: Path) -> float:
    """`vaepipe decode` of a score run's codes/; returns wall seconds."""
    args = ["decode", "--model", str(model_dir), "--input", str(codes_dir), "--output"]
    return run_vaepipe(args + [str(out_dir)])


def read_by_id(table_dir: Path, ids: Sequence) -> pd.DataFrame:
    """A vaepipe Parquet output (flags/, codes/, decoded/) ordered like `ids` (integer ids)."""
    frame = pd.read_parquet(table_dir)
    frame["_id"] = frame.record_id.astype(np.int64)
    missing = set(np.asarray(ids, dtype=np.int64)) - set(frame["_id"])
    if missing:
        raise RuntimeError(f"{len(missing)} ids missing from {table_dir} (dead-lettered?)")
    return frame.set_index("_id").loc[np.asarray(ids, dtype=np.int64)]


def machine() -> str:
    """One line: cores, memory, CPU model, Python, Keras backend, date and load average."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} CPU cores ({_cpu_model()}), {memory:.0f} GiB, no GPU used; "
        f"Python {platform.python_version()}; KERAS_BACKEND="
        f"{os.environ.get('KERAS_BACKEND', 'tensorflow')}; {datetime.date.today()}; "
        f"load average at start {load}"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def markdown(frame: pd.DataFrame, floatfmt: str = ".4f", index: bool = False) -> str:
    """A GitHub markdown table."""
    return frame.to_markdown(index=index, floatfmt=floatfmt)


def log(message: str) -> None:
    """Progress to stderr (stdout carries the tables)."""
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)
