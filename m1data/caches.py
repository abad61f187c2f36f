"""A datasets cache this process can write. `datasets` writes an Arrow copy of every file it reads
(`Dataset.from_parquet`, `from_json`, `load_dataset` of a folder) under HF_DATASETS_CACHE, by
default ~/.cache/huggingface/datasets; where HOME cannot be written (a container run as a user
with no home, a service account, HOME=/nonexistent) every build stopped at its first stage with
PermissionError, though nothing a build reads comes from that cache. Called when m1data is
imported, before `datasets` is; it changes nothing where HOME can be written."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path


def use_a_writable_datasets_cache(environ: MutableMapping[str, str] = os.environ) -> None:
    """Leave datasets' cache where it is when it can be made and written (or when
    HF_DATASETS_CACHE says where it is); else point HF_DATASETS_CACHE at a folder of this user's
    under the temp dir, for this process and the ones it starts."""
    if environ.get("HF_DATASETS_CACHE"):
        return
    hf_home = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    if can_write_in(Path(os.path.expanduser(hf_home)) / "datasets"):
        return
    fallback = _private_folder(Path(tempfile.gettempdir()) / f"m1data-datasets-cache-{os.getuid()}")
    if fallback is None:
        return
    environ["HF_DATASETS_CACHE"] = str(fallback)
    config = sys.modules.get("datasets.config")
    if config is not None and environ is os.environ:  # imported before m1data: its paths were worked out
        config.HF_DATASETS_CACHE = fallback
        config.DOWNLOADED_DATASETS_PATH = fallback / config.DOWNLOADED_DATASETS_DIR
        config.EXTRACTED_DATASETS_PATH = config.DOWNLOADED_DATASETS_PATH / config.EXTRACTED_DATASETS_DIR


def _private_folder(path: Path) -> Path | None:
    """`path`, made if need be, when it is a real folder of this user's that no one else can write;
    else a new private folder beside it (None if none can be made). The temp dir is shared: the
    copies of the user's rows must not go into a folder (or a link to one) that another user made
    first under this name, where they could read or swap them."""
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(OSError):
        found = os.lstat(path)
        if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o022:
            return path
    try:
        return Path(tempfile.mkdtemp(prefix=f"{path.name}-", dir=path.parent))
    except OSError:
        return None


def can_write_in(folder: Path) -> bool:
    """Whether `folder` can be written, or made in its nearest existing parent."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
