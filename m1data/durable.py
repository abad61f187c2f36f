"""Writes that survive a power cut: what is renamed into place is on disk before the rename, and
the rename itself is on disk before the write returns.

Why: a rename makes a file or folder visible whole, but the file system may commit the rename
before the data it names. After a power cut a `manifest.json` (or `builds.json`, a Hub shard)
could then be there, under its final name, empty or cut short: read as a finished stage, or
failing every later command. So each file is flushed and fsynced under its temporary name, and
its folder after the rename. One fsync per file written, never per row.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: str | Path) -> None:
    """Put what was written to `path` (closed, or by another handle) on disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: str | Path) -> None:
    """Put `folder`'s entries on disk: the files created in it and the renames into or out of it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """Every file under `folder`, and every folder in it, on disk: what a folder about to be
    renamed into place (a stage folder, a Hub folder) must hold before the rename."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            fsync_file(path)
        elif path.is_dir():
            fsync_folder(path)
    fsync_folder(folder)


def write_atomic(path: str | Path, content: str | bytes, encoding: str = "utf-8") -> None:
    """`content` in `path`, whole or not at all, even across a power cut: written to a hidden
    temporary name beside it, fsynced, renamed into place, and the folder fsynced. A failure
    before the rename leaves the old file as it was and no temporary file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = content.encode(encoding) if isinstance(content, str) else content
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


__all__ = ["fsync_file", "fsync_folder", "fsync_tree", "write_atomic"]
