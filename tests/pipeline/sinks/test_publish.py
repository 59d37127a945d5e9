"""Publishing a run as a whole (a versioned folder, then one pointer) and the lease that keeps
one job per output folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pipeline.sinks.publish import (
    CURRENT,
    LEASE_FILE,
    RUNS,
    OutputBusy,
    OutputLease,
    current_run,
    lease_is_live,
    publish,
    read_lease,
    remove_stale_staging,
)

NAMES = ("flags", "codes", "summary.json")


def stage(out, run_id: str, label: str):
    staging = out / f".staging-{run_id}"
    for table in ("flags", "codes"):
        (staging / table).mkdir(parents=True)
        (staging / table / "part-0.parquet").write_text(f"{label} {table}")
    (staging / "summary.json").write_text(json.dumps({"run_id": run_id}))
    return staging


def test_a_publish_moves_the_run_whole_then_switches_the_pointer_then_refreshes_copies(tmp_path):
    out = tmp_path / "out"
    assert publish(str(stage(out, "run1", "one")), str(out), NAMES, "summary.json") == "run1"
    assert current_run(str(out)) == "run1"
    assert (out / RUNS / "run1" / "flags" / "part-0.parquet").read_text() == "one flags"
    assert (out / "flags" / "part-0.parquet").read_text() == "one flags"  # the copy users read
    assert json.loads((out / "summary.json").read_text())["run_id"] == "run1"

    publish(str(stage(out, "run2", "two")), str(out), NAMES, "summary.json")
    publish(str(stage(out, "run3", "three")), str(out), NAMES, "summary.json")
    assert (out / CURRENT).read_text() == "run3\n"
    assert sorted(p.name for p in (out / RUNS).iterdir()) == ["run2", "run3"]  # + previous
    assert (out / "codes" / "part-0.parquet").read_text() == "three codes"
    assert not list(out.glob(".staging-*"))


def test_an_incomplete_staging_folder_changes_nothing_published(tmp_path):
    out = tmp_path / "out"
    publish(str(stage(out, "run1", "one")), str(out), NAMES, "summary.json")
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = stage(out, "run2", "two")
    (broken / "codes" / "part-0.parquet").unlink()
    (broken / "codes").rmdir()
    with pytest.raises(FileNotFoundError, match="codes"):
        publish(str(broken), str(out), NAMES, "summary.json")
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if not k.startswith(".staging-")} == before


def test_a_live_lease_refuses_a_second_job_with_a_clear_message(tmp_path):
    with OutputLease(str(tmp_path), "first", settle_seconds=0):
        with pytest.raises(OutputBusy, match="in use by another vaepipe job.*first"):
            OutputLease(str(tmp_path), "second", settle_seconds=0).acquire()
    assert not (tmp_path / LEASE_FILE).exists()  # released
    with OutputLease(str(tmp_path), "second", settle_seconds=0):
        pass


def test_a_lease_without_heartbeat_expires_and_is_taken_over(tmp_path):
    stale = {"job_id": "old", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - 601}
    (tmp_path / LEASE_FILE).write_text(json.dumps(stale))
    assert not lease_is_live(stale, time.time())
    with OutputLease(str(tmp_path), "new", settle_seconds=0):
        assert read_lease(str(tmp_path / LEASE_FILE))["job_id"] == "new"
    fresh = dict(stale, heartbeat=time.time() - 30)  # another machine, 30 s ago: live
    (tmp_path / LEASE_FILE).write_text(json.dumps(fresh))
    with pytest.raises(OutputBusy, match="old on elsewhere"):
        OutputLease(str(tmp_path), "new", settle_seconds=0).acquire()


def test_a_lease_of_a_process_gone_from_this_machine_is_taken_over_at_once(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    holder = {"job_id": "killed", "host": socket.gethostname(), "pid": int(ended.stdout),
              "heartbeat": time.time()}  # fmt: skip
    (tmp_path / LEASE_FILE).write_text(json.dumps(holder))
    with OutputLease(str(tmp_path), "next", settle_seconds=0):
        pass
    alive = dict(holder, pid=os.getpid())
    assert lease_is_live(alive, time.time())


def test_the_heartbeat_refreshes_the_lease_and_stops_if_another_job_took_it(tmp_path):
    lease = OutputLease(str(tmp_path), "beating", heartbeat_seconds=0.05, settle_seconds=0)
    with lease:
        first = read_lease(lease.path)["heartbeat"]
        time.sleep(0.3)
        assert read_lease(lease.path)["heartbeat"] > first
        taker = {"job_id": "taker", "heartbeat": time.time()}
        (tmp_path / LEASE_FILE).write_text(json.dumps(taker))
        time.sleep(0.3)
        assert lease.lost and read_lease(lease.path)["job_id"] == "taker"  # not overwritten
    assert read_lease(lease.path)["job_id"] == "taker"  # release leaves another's lease


def test_stale_staging_folders_go_and_this_jobs_own_stays(tmp_path):
    for name in (".staging-a", ".staging-b", "keep"):
        (tmp_path / name).mkdir()
    removed = remove_stale_staging(str(tmp_path), keep=[str(tmp_path / ".staging-b")])
    assert [os.path.basename(r) for r in removed] == [".staging-a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-b", "keep"]
