"""Staging, publishing and the one-job-per-output-folder lease.

A score job writes its outputs to `OUT/.staging-<run>/`. When it has succeeded they are
published in three steps:

1. the staging folder becomes `OUT/_runs/<run>/` (one complete set of outputs);
2. `OUT/CURRENT` is replaced by the run's id (one small file, replaced atomically): from this
   moment readers that follow the pointer see the new run, before it the old one, never a mix;
3. `OUT/flags`, `OUT/codes`, ... are refreshed as copies of the current run, `summary.json`
   removed first and copied last (the paths users read today keep working; their `summary.json`
   names the run they belong to, so `summary.json`'s `run_id == CURRENT` says they are whole).

`_runs/` keeps the current and the previous run (a reader still on the previous one is not cut
off); older runs are removed. The leading `_` keeps Hive-style readers (Spark, BigQuery
external tables over `scores/partition=...`) from reading the runs as data.

The lease: a job holds `OUT/.lease.json` (its id, host, process and a heartbeat refreshed by a
background thread) while it runs. A second job on the same folder is refused while the lease
is live; a lease is dead when its heartbeat is older than LEASE_EXPIRY_SECONDS, or at once when
its process is gone on this machine (a killed run). Staging folders and unpublished runs are
removed only by a job that holds the lease, i.e. after their own job's lease died.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from apache_beam.io.filesystems import FileSystems

from pipeline.core.fs import (
    copy_tree,
    exists,
    list_folders,
    move_tree,
    read_text,
    remove_folders,
    write_atomically,
)

STAGING_PREFIX = ".staging-"
RUNS = "_runs"
CURRENT = "CURRENT"
LEASE_FILE = ".lease.json"
KEEP_RUNS = 2  # the current run and the one before it
# A live job rewrites its lease every HEARTBEAT_SECONDS; one whose lease has not been rewritten
# for LEASE_EXPIRY_SECONDS is taken for dead (20 missed heartbeats: a slow object store or a
# paused process is not enough). Clocks of the machines sharing a folder must agree to well
# within the expiry.
HEARTBEAT_SECONDS = 30.0
LEASE_EXPIRY_SECONDS = 600.0
# After writing its lease a job waits this long and reads it back: of two jobs that found no
# lease at the same moment, only the one whose write landed last goes on.
LEASE_SETTLE_SECONDS = 0.5


class OutputBusy(ValueError):
    """Another live job holds the output folder's lease."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def new_staging(output_dir: str, run_id: str | None = None) -> str:
    """A fresh staging folder's path under `output_dir` (created by the job's writes)."""
    return os.path.join(output_dir, f"{STAGING_PREFIX}{run_id or new_run_id()}")


def remove_stale_staging(output_dir: str, keep: Sequence[str] = ()) -> list[str]:
    """Staging folders of dead jobs; call it only while holding the folder's lease (then no
    other job is running there). `keep`: folders to leave (this job's own)."""
    stale = [f for f in list_folders(output_dir, STAGING_PREFIX) if f not in keep]
    if stale:
        FileSystems.delete(stale)
    return stale


def current_run(output_dir: str) -> str | None:
    """The id of the published run `OUT/CURRENT` names, or None before the first publish."""
    path = os.path.join(output_dir, CURRENT)
    if not exists(path):
        return None
    return read_text(path).strip() or None


def run_folder(output_dir: str, run_id: str) -> str:
    return os.path.join(output_dir, RUNS, run_id)


def publish(staging: str, output_dir: str, names: Sequence[str], last: str) -> str:
    """Publish a complete staging folder as the current run; returns the run id.

    Nothing published changes unless every output in `names` was staged. `last` (the
    summary) is removed first from the top-level copies and copied back last.
    """
    missing = [name for name in names if not exists(os.path.join(staging, name))]
    if missing:
        raise FileNotFoundError(
            f"cannot publish {staging}: outputs {missing} were not staged; the published "
            "outputs were left as they were"
        )
    run_id = os.path.basename(staging.rstrip("/"))[len(STAGING_PREFIX) :]
    previous = current_run(output_dir)
    run_dir = run_folder(output_dir, run_id)
    move_tree(staging, run_dir)
    write_atomically(os.path.join(output_dir, CURRENT), f"{run_id}\n".encode())
    _refresh_copies(run_dir, output_dir, names, last)
    _remove_old_runs(output_dir, keep={run_id, previous})
    return run_id


def _refresh_copies(run_dir: str, output_dir: str, names: Sequence[str], last: str) -> None:
    if last in names and exists(os.path.join(output_dir, last)):
        FileSystems.delete([os.path.join(output_dir, last)])
    for name in sorted(names, key=lambda name: name == last):
        copy_tree(os.path.join(run_dir, name), os.path.join(output_dir, name))


def _remove_old_runs(output_dir: str, keep: set) -> list[str]:
    runs = os.path.join(output_dir, RUNS)
    old = [f for f in list_folders(runs, "") if os.path.basename(f.rstrip("/")) not in keep]
    if old:
        FileSystems.delete(old)
    return old


# --------------------------------------------------------------------------------- the lease


@dataclass
class OutputLease:
    """The lease of one job on one output folder (see the module docstring).

    `acquire` refuses (OutputBusy) while another live job holds it and starts the heartbeat;
    `release` stops the heartbeat and removes the lease. Use it as a context manager.
    """

    output_dir: str
    job_id: str
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    expiry_seconds: float = LEASE_EXPIRY_SECONDS
    settle_seconds: float = LEASE_SETTLE_SECONDS
    clock: Callable[[], float] = time.time
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return os.path.join(self.output_dir, LEASE_FILE)

    def acquire(self) -> OutputLease:
        holder = read_lease(self.path)
        if holder is not None and holder.get("job_id") != self.job_id:
            self._refuse_if_live(holder)
        self._write()
        time.sleep(self.settle_seconds)
        holder = read_lease(self.path)
        if holder is None or holder.get("job_id") != self.job_id:
            self._refuse_if_live(holder or {}, racing=True)
        self._thread = threading.Thread(target=self._beat, name="vaepipe-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = read_lease(self.path)
        if holder is not None and holder.get("job_id") == self.job_id:
            FileSystems.delete([self.path])

    def __enter__(self) -> OutputLease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _refuse_if_live(self, holder: dict, racing: bool = False) -> None:
        if racing or lease_is_live(holder, self.clock(), self.expiry_seconds):
            holder_text = _describe(holder, self.clock())
            raise OutputBusy(
                f"{self.output_dir} is in use by another vaepipe job ({holder_text}): two jobs "
                "on one output folder would "
                "remove each other's files. Wait for it to finish or give another --output "
                f"(a lease without a heartbeat for {self.expiry_seconds:.0f} s, or whose "
                f"process on this machine is gone, is taken over; the lease is {self.path})"
            )

    def _write(self) -> None:
        now = self.clock()
        body = {
            "job_id": self.job_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "heartbeat": now,
            "heartbeat_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }
        write_atomically(self.path, json.dumps(body).encode())

    def _beat(self) -> None:
        """Refresh the heartbeat until released; stop (and mark the lease lost) if another
        job took it over, so as never to overwrite a live job's lease."""
        while not self._stop.wait(self.heartbeat_seconds):
            holder = read_lease(self.path)
            if holder is not None and holder.get("job_id") != self.job_id:
                self.lost = True
                return
            try:
                self._write()
            except OSError:  # one failed write is not fatal: the expiry allows many misses
                continue


def read_lease(path: str) -> dict | None:
    """The lease at `path`, or None if there is none. A lease that cannot be read whole
    counts as live now (it is being written), never as absent."""
    if not exists(path):
        return None
    try:
        holder = json.loads(read_text(path))
    except (OSError, ValueError):
        return {"job_id": "?", "heartbeat": time.time()}
    return holder if isinstance(holder, dict) else {"job_id": "?", "heartbeat": time.time()}


def lease_is_live(holder: dict, now: float, expiry_seconds: float = LEASE_EXPIRY_SECONDS) -> bool:
    """A heartbeat younger than the expiry, from a process that (on this machine) still runs."""
    if now - float(holder.get("heartbeat", 0)) > expiry_seconds:
        return False
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return _process_runs(holder["pid"])
    return True


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _describe(holder: dict, now: float) -> str:
    where = f" on {holder['host']}" if holder.get("host") else ""
    pid = f", process {holder['pid']}" if holder.get("pid") else ""
    beat = holder.get("heartbeat")
    age = f", last heartbeat {max(now - float(beat), 0):.0f} s ago" if beat else ""
    return f"job {holder.get('job_id', '?')}{where}{pid}{age}"


__all__ = [
    "CURRENT",
    "LEASE_FILE",
    "RUNS",
    "OutputBusy",
    "OutputLease",
    "current_run",
    "new_staging",
    "publish",
    "remove_folders",
    "remove_stale_staging",
]
