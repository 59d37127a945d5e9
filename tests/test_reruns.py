"""Re-running `vaepipe score`, killing it mid-run, and where its outputs may land.

Outputs are staged under `OUT/.staging-<id>/` and published when the job succeeds (the run
folder `OUT/_runs/<id>/`, then the pointer `OUT/CURRENT`, then the copies `OUT/flags` ...), so:
a finished run re-run gives the same records; a run killed (SIGKILL) while writing leaves the
published outputs as they were (an earlier run's, or none) and its lease `OUT/.lease.json`,
which the next run takes over (the killed process is gone) before it removes the killed run's
staging folder; nothing is written outside OUT.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.cli.demo_data import synthetic_table
from pipeline.jobs.score import DEAD_LETTER, SUMMARY
from pipeline.scoring.outputs import CODES, FLAGS
from pipeline.sinks.publish import CURRENT, LEASE_FILE, RUNS, publish

TABLES = (FLAGS, CODES, DEAD_LETTER)
BIG_ROWS = 200_000


def score(model_dir: Path, input_path: Path | str, out: Path | str, *extra: str) -> int:
    args = ["score", "--model", str(model_dir), "--input", str(input_path), "--output", str(out)]
    return main(args + list(extra))


def score_command(model_dir: Path, input_path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "score", "--model", str(model_dir),
            "--input", str(input_path), "--output", str(out)]  # fmt: skip


def sorted_records(out: Path, name: str) -> pd.DataFrame:
    """A table's records in record-id order, whatever files hold them (codes as tuples)."""
    frame = pd.read_parquet(out / name)
    if "code" in frame:
        frame["code"] = frame["code"].map(tuple)
    return frame.sort_values("record_id", kind="stable").reset_index(drop=True)


def all_records(out: Path) -> dict[str, pd.DataFrame]:
    return {name: sorted_records(out, name) for name in TABLES}


def assert_same_records(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def file_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by path relative to it."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def final_outputs(out: Path) -> dict[str, str]:
    """Digests of the published outputs: everything but staging folders and the lease (a
    killed job leaves its lease; the next job takes it over)."""
    return {
        k: v
        for k, v in file_digests(out).items()
        if not k.startswith(".staging-") and k != LEASE_FILE
    }


def staging_folders(out: Path) -> list[Path]:
    return sorted(out.glob(".staging-*"))


def batch_with_bad_rows(data_dir: Path, path: Path, rows: int = 300) -> Path:
    """`rows` good records plus a few bad ones (so dead letters are not empty)."""
    lines = (data_dir / "normal.csv").read_text().splitlines()[: rows + 1]
    width = lines[0].count(",") + 1
    bad = ["bad1,oops" + ",1" * (width - 2), "bad2,1,2", "bad3,inf" + ",1" * (width - 2)]
    path.write_text("\n".join(lines + bad) + "\n")
    return path


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    synthetic_table(BIG_ROWS, anomaly_rate=0.01, seed=3).to_csv(path, index=False)
    return path


def kill_while_writing(model_dir: Path, input_path: Path, out: Path, timeout: float = 240):
    """Start `vaepipe score` in a subprocess and SIGKILL it (its process group) once it is
    writing output parts; fails unless it was killed, showing its stderr."""
    log = out.parent / f"{out.name}-killed-job.log"
    with log.open("wb") as stderr:
        job = subprocess.Popen(
            score_command(model_dir, input_path, out),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            while job.poll() is None and time.monotonic() < deadline:
                if any(s.rglob("*.parquet") for s in staging_folders(out)):
                    break
                time.sleep(0.05)
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
        code = job.wait(timeout=60)
    tail = log.read_text(errors="replace")[-2000:]
    assert code == -signal.SIGKILL, f"the job ended (exit {code}) before it was killed:\n{tail}"
    assert staging_folders(out), "the killed job had not started writing"


# --------------------------------------------------------------------------- re-running


def test_rerunning_a_finished_job_gives_the_same_records(model_dir, data_dir, tmp_path):
    batch = batch_with_bad_rows(data_dir, tmp_path / "batch.csv")
    out = tmp_path / "out"
    assert score(model_dir, batch, out) == 0
    first, summary = all_records(out), json.loads((out / SUMMARY).read_text())
    assert score(model_dir, batch, out) == 0
    second = all_records(out)

    assert_same_records(first, second)
    rerun = json.loads((out / SUMMARY).read_text())
    assert rerun.pop("run_id") != summary.pop("run_id")  # each run is published as its own
    assert rerun == summary
    assert len(second[FLAGS]) == summary["rows_scored"] == 300
    assert len(second[DEAD_LETTER]) == summary["rows_dead_lettered"] == 3
    for name in TABLES:
        assert not second[name]["record_id"].duplicated().any(), name
    assert staging_folders(out) == []


# ------------------------------------------------------------------- killed mid-run


def test_a_killed_run_leaves_the_earlier_outputs_and_the_next_run_cleans_up(
    model_dir, data_dir, big_input, tmp_path
):
    out = tmp_path / "out"
    batch = batch_with_bad_rows(data_dir, tmp_path / "batch.csv")
    assert score(model_dir, batch, out) == 0
    before, records = final_outputs(out), all_records(out)

    kill_while_writing(model_dir, big_input, out)
    assert final_outputs(out) == before  # the earlier outputs, byte for byte, nothing added

    assert score(model_dir, batch, out) == 0
    assert staging_folders(out) == []
    assert_same_records(records, all_records(out))


def test_a_killed_first_run_leaves_nothing_and_a_rerun_scores_everything_once(
    model_dir, big_input, tmp_path
):
    out = tmp_path / "out"
    kill_while_writing(model_dir, big_input, out)
    assert final_outputs(out) == {}

    assert score(model_dir, big_input, out) == 0
    assert staging_folders(out) == []
    flags, codes = sorted_records(out, FLAGS), sorted_records(out, CODES)
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["rows_read"] == summary["rows_scored"] == len(flags) == len(codes) == BIG_ROWS
    assert not flags["record_id"].duplicated().any()
    assert flags["record_id"].tolist() == codes["record_id"].tolist()


def test_stale_staging_folders_are_removed_and_nothing_else(model_dir, data_dir, tmp_path, capsys):
    """A killed run's staging folder (files or only empty folders) goes at the next run's start;
    other files in the output folder stay. Assumes one job per output folder at a time."""
    out = tmp_path / "out"
    (out / ".staging-0123456789ab" / FLAGS).mkdir(parents=True)
    (out / ".staging-0123456789ab" / FLAGS / "part-00000-of-00001.parquet").write_bytes(b"junk")
    (out / ".staging-ba9876543210" / CODES / "beam-temp-part-x").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    batch = batch_with_bad_rows(data_dir, tmp_path / "batch.csv", rows=50)
    assert score(model_dir, batch, out) == 0
    assert staging_folders(out) == []
    assert capsys.readouterr().out.count("left by an interrupted run") == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert len(sorted_records(out, FLAGS)) == 50


def test_a_publish_that_cannot_complete_changes_nothing_published(tmp_path):
    """A publish is a run folder plus one pointer switched last: a staging folder that lacks
    an output is refused before anything published changes (the old contract removed the
    summary first and could leave old and new outputs mixed)."""
    out, staging = tmp_path / "out", tmp_path / "out" / ".staging-abc"
    for folder in (out, staging):
        (folder / FLAGS).mkdir(parents=True)
        (folder / FLAGS / "part.parquet").write_text(folder.name)
        (folder / SUMMARY).write_text(json.dumps({"run": folder.name}))
    with pytest.raises(FileNotFoundError, match="codes"):
        publish(str(staging), str(out), (FLAGS, CODES, SUMMARY), last=SUMMARY)  # no staged codes/
    assert json.loads((out / SUMMARY).read_text()) == {"run": "out"}
    assert (out / FLAGS / "part.parquet").read_text() == "out"
    publish_ok = tmp_path / "ok"
    (publish_ok / ".staging-def" / FLAGS).mkdir(parents=True)
    (publish_ok / ".staging-def" / SUMMARY).write_text("{}")
    publish(str(publish_ok / ".staging-def"), str(publish_ok), (SUMMARY, FLAGS), last=SUMMARY)
    assert sorted(p.name for p in publish_ok.iterdir()) == [CURRENT, RUNS, FLAGS, SUMMARY]
    assert (publish_ok / CURRENT).read_text() == "def\n"
    assert sorted(p.name for p in (publish_ok / RUNS / "def").iterdir()) == [FLAGS, SUMMARY]


# ------------------------------------------------------------------ where outputs land


TRAVERSAL_IDS = ["../../etc/passwd", "../escape", "a/../../b", "..\\..\\win", "/etc/shadow"]


def test_outputs_stay_inside_the_output_folder(model_dir, data_dir, tmp_path, monkeypatch):
    """An output path with `..` and record ids that look like paths write only under the
    folder the output path names (checked by listing every file under tmp_path, the working
    directory included, and the model bundle, before and after)."""
    cwd = tmp_path / "cwd"
    (cwd / "a").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    frame = pd.read_csv(data_dir / "normal.csv").head(40)
    ids = TRAVERSAL_IDS + [str(tmp_path / "abs" / "id")]
    frame.loc[: len(ids) - 1, "id"] = ids
    frame.loc[len(ids), "id"] = "../../dead/letter"
    frame["load"] = frame["load"].astype(object)
    frame.loc[len(ids), "load"] = "not-a-number"
    frame.to_csv(cwd / "batch.csv", index=False)
    before, bundle = file_digests(tmp_path), file_digests(model_dir)

    assert score(model_dir, "batch.csv", os.path.join("a", "..", "b")) == 0

    after = file_digests(tmp_path)
    assert file_digests(model_dir) == bundle
    assert {k: after.get(k) for k in before} == before  # nothing changed or removed
    written = sorted(set(after) - set(before))
    assert written and all(p.startswith(os.path.join("cwd", "b") + os.sep) for p in written)
    assert sorted(p.name for p in (cwd / "a").iterdir()) == []
    flags = sorted_records(cwd / "b", FLAGS)
    assert set(ids) <= set(flags["record_id"])
    dead = sorted_records(cwd / "b", DEAD_LETTER)
    assert dead["record_id"].tolist() == ["../../dead/letter"]
    assert np.isfinite(flags["score"]).all()


# End-to-end: whole CLI jobs on the DirectRunner (run by CI; `pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow
