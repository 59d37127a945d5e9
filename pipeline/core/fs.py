"""Small files through Beam's file systems, so that the same call works locally and on gs://."""

from __future__ import annotations

import json
import os

from apache_beam.io.filesystems import FileSystems


def write_bytes(path: str, data: bytes) -> None:
    """Write a small file (local or gs://)."""
    with FileSystems.create(path) as handle:
        handle.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, data: object) -> None:
    write_text(path, json.dumps(data, indent=1, default=str))


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def remove_folders(parent: str, prefix: str) -> list[str]:
    """Delete every folder directly under `parent` whose name starts with `prefix` (local or
    remote file systems); returns the folders deleted."""
    folders = list_folders(parent, prefix)
    if folders:
        FileSystems.delete(folders)
    return folders


def list_folders(parent: str, prefix: str) -> list[str]:
    """The folders directly under `parent` whose name starts with `prefix`."""
    start = FileSystems.join(parent, prefix)
    found = FileSystems.match([start + "*/**"])[0].metadata_list
    names = {m.path[len(start) :].split("/")[0] for m in found if m.path.startswith(start)}
    folders = {start + name for name in names}
    if os.path.isdir(parent):  # local: also folders that hold only (empty) folders
        folders |= {start + n[len(prefix) :] for n in os.listdir(parent) if n.startswith(prefix)}
    return sorted(folders)
