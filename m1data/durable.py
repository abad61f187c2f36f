"""Writes that survive a power cut: what is renamed into place is on disk before the rename, and
the rename itself is on disk before the write returns.

Why: a rename makes a file or folder visible whole, but the file system may commit the rename
before the data it names. After a power cut a `manifest.json` (or `builds.json`, a Hub shard)
could then be there, under its final name, empty or cut short: read as a finished stage, or
failing every later command. So each file is flushed and fsynced under its temporary name, and
its folder after the rename. One fsync per file written, never per row.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from collections.abc import Iterator
from pathlib import Path

from m1data.errors import storage_errors


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
    before the rename leaves the old file as it was and no temporary file; what a SIGKILL's
    leaves (no cleanup runs) is removed by the next write of `path`, as `replacing` does."""
    path = Path(path)
    _remove_dead_partials(path.parent, f".{path.name}.", ".tmp")
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = content.encode(encoding) if isinstance(content, str) else content
    with _renamed_into(partial, path):
        with open(partial, "wb") as handle:
            handle.write(data)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a file name (joblib, matplotlib,
    pyarrow), renamed onto `path` when the block ends without error, as `write_atomic` does.
    Why: such a writer opens its target for writing at once, so a kill, Ctrl-C or a full disk
    in the middle left the file cut short under its final name, the good file it replaced
    already gone. The temporary name keeps `path`'s suffix, from which those writers take the
    format (`tagger.joblib.gz` compressed, `figure.png` a PNG)."""
    path = Path(path)
    _remove_dead_partials(path.parent, f".{path.stem}.", f".tmp{path.suffix}")
    partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    with _renamed_into(partial, path):
        yield partial


def _remove_dead_partials(folder: Path, prefix: str, suffix: str) -> None:
    """Delete the temporary files `PREFIX<pid>SUFFIX` in `folder` that writes killed before their
    rename left (by `replacing`: a whole model each; by `write_atomic`: a builds.json, a
    metrics.json), under a hidden name nothing else removes; one whose writer is still alive is
    left to it."""
    for leftover in folder.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        pid = leftover.name[len(prefix):-len(suffix)]
        if pid.isdigit() and not other_process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def other_process_alive(pid: int) -> bool:
    """Whether `pid` is a live process other than this one: the writer of a temporary file named
    by its pid, still writing it (this process writes one such file at a time, so its own name
    on a leftover is from an earlier write)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder` while entries are renamed into it: an OS lock (flock) on the folder itself,
    so no lock file is left in it, released by the OS however the holder ends. Why: two writers
    renaming into one folder at once interleaved their renames (a file command's OUT beside the
    other's dropped file; a Hub folder swapped in while another was between its two renames)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _renamed_into(partial: Path, path: Path) -> Iterator[None]:
    """What the block writes to `partial`: fsynced and renamed onto `path`, the folder fsynced;
    on any failure (a kill's KeyboardInterrupt included) `partial` is removed, `path` untouched.
    A full or read-only disk is a `StorageError` naming `path` (the error of a write names no
    file: the CLI said "cannot use a file")."""
    with storage_errors(path):
        try:
            yield
            fsync_file(partial)
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)


__all__ = ["folder_lock", "fsync_file", "fsync_folder", "fsync_tree", "other_process_alive", "replacing",
           "write_atomic"]
