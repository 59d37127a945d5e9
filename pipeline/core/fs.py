"""Small files through Beam's file systems, so that the same call works locally and on gs://."""

from __future__ import annotations

import json
import os
import shutil
import uuid

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


def is_local(path: str) -> bool:
    return "://" not in path


def write_atomically(path: str, data: bytes) -> None:
    """Replace a small file so that a reader sees the old or the new content, never a part:
    written beside it, then renamed over it (a POSIX rename replaces atomically; an object
    store's copy makes the new object visible whole)."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    write_bytes(temporary, data)
    if not is_local(path) and FileSystems.exists(path):
        FileSystems.delete([path])  # object stores do not rename over an existing object
    FileSystems.rename([temporary], [path])


def files_below(folder: str) -> list[str]:
    """Every file below `folder` (recursively), local or remote."""
    if is_local(folder):
        return sorted(
            os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
        )
    found = FileSystems.match([folder.rstrip("/") + "/**"])[0].metadata_list
    return sorted(m.path for m in found)


def is_file(path: str) -> bool:
    """Whether `path` is one file (not a folder); remote: an object of exactly that name."""
    if is_local(path):
        return os.path.isfile(path)
    found = FileSystems.match([path])[0].metadata_list
    return any(m.path == path for m in found)


def move_tree(source: str, target: str) -> None:
    """Move a file or a folder to `target` (whose parent is created). Local: one rename, so a
    folder appears whole; remote: file by file (an object store has no folders)."""
    if is_local(source):
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        os.rename(source, target)
        return
    sources = [source] if is_file(source) else files_below(source)
    FileSystems.rename(sources, [target + s[len(source) :] for s in sources])


def copy_tree(source: str, target: str) -> None:
    """Copy a file or a folder to `target` (replaced if it exists)."""
    if exists(target):
        FileSystems.delete([target])
    if is_local(source):
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return
    sources = [source] if is_file(source) else files_below(source)
    FileSystems.copy(sources, [target + s[len(source) :] for s in sources])


def same_or_nested(a: str, b: str) -> bool:
    """Whether two folders are the same, or one is inside the other (local paths resolved,
    links followed; remote paths compared as written, without trailing slashes)."""
    a, b = _comparable(a), _comparable(b)
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _comparable(path: str) -> str:
    if is_local(path):
        return os.path.realpath(os.path.abspath(os.path.expanduser(path))).replace(os.sep, "/")
    return path.rstrip("/")
