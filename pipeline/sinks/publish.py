"""Staging and publishing: a job writes its outputs to a staging folder beside the final ones
and moves them into place only when it has succeeded."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from pipeline.core.fs import remove_folders

STAGING_PREFIX = ".staging-"


def new_staging(output_dir: str) -> str:
    """A fresh staging folder's path under `output_dir` (created by the job's writes)."""
    return os.path.join(output_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


def remove_stale_staging(output_dir: str) -> list[str]:
    """Staging folders left by killed runs (assumes one job per output folder at a time)."""
    return remove_folders(output_dir, STAGING_PREFIX)


def publish(staging: str, output_dir: str, names: Sequence[str], last: str) -> None:
    """Replace each output under `output_dir` by its complete staged version, then clean up.

    `last` (the summary) goes first and comes back last: an output folder without one holds
    a publish that was cut short (the next run replaces every output).
    """
    if last in names and FileSystems.exists(os.path.join(output_dir, last)):
        FileSystems.delete([os.path.join(output_dir, last)])
    for name in sorted(names, key=lambda name: name == last):
        final = os.path.join(output_dir, name)
        if FileSystems.exists(final):
            FileSystems.delete([final])
        FileSystems.rename([os.path.join(staging, name)], [final])
    FileSystems.delete([staging])
