"""Publishing: a Hub-layout folder on disk, then one commit to a dataset repo.

Two steps on purpose. `write_hub_folder` produces exactly what will be uploaded, so it can be
inspected, loaded back with ``datasets.load_dataset(folder, name=...)`` and tested offline.
`publish` only moves that folder to the Hub, and it is the sole place that talks to the network.

Layout of a folder::

    README.md                                   the card; its YAML maps configs/splits to files
    data/<config>/<split>-00000-of-0000N.parquet
    images/<name>.png                           figures the card links to

Why the YAML lists data files per config instead of relying on folder conventions: several
configs (m23K, m1K, ablation subsets) may share one repo, and ``configs:`` is what `datasets`
and the Hub viewer read to tell them apart.

Why publishing merges instead of overwriting: a repo may already hold configs that somebody
else published (m23K before m1K, say). Replacing README.md blindly would drop their ``configs:``
entries and make their files unreachable through `load_dataset`, so `publish` reads the remote
card, keeps every config it is not replacing, and deletes only stale shards of its own configs.

Not here: the card's YAML header and its data part (m1data.publishing.cardmeta), the card's text
(m1data.cards), and turning a run directory into a folder (m1data.publishing.export), which uses both.

The Hub token is never read by this module except to make sure it does not appear in what is
about to be uploaded, and to mask it out of the Hub's error messages, which quote the server's
answer (`_hub_refusals`); `hub_token` resolves it once (argument, HF_TOKEN, saved login) and hands
it to `HfApi`, and nothing here writes it anywhere. The same last check covers the values of every key the run's stage configs
name (`api_key_env`) and of every `*_API_KEY` variable set. It also refuses a folder that holds
an absolute local path (`m1data.redact.local_paths`: this machine's home, clone or temp folder,
`/home/...`, `/root/...`, a site-packages path, ...), in the card or in any string of the data:
m1data's export cuts them to file names, so one left means a folder written otherwise, and a
dry run lists them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import yaml

from m1data.durable import folder_lock, fsync_folder, fsync_tree
from m1data.errors import UserError, storage_errors
from m1data.publishing.cardmeta import (
    CARD_FILE,
    DATA_DIR,
    IMAGES_DIR,
    NAMED_REPO_MARK,
    REPO_ID_MARK,
    Configs,
    as_config_list,
    card_with_metadata,
    data_metadata,
    rows_nbytes,
    size_category,
    split_card,
    split_glob,
)
from m1data.reading.readers import other_process_alive
from m1data.schema import flattened

log = logging.getLogger(__name__)

MAX_SHARD_BYTES = 500 * 1024 * 1024
# Top-level entries write_hub_folder may replace; anything else means the folder is not ours.
_OWNED_ENTRIES = {CARD_FILE, DATA_DIR, IMAGES_DIR}

_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # the rule `datasets` applies to split names
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.png$")


# ---------------------------------------------------------------------------------------------
# Shards


def shard_count(ds: datasets.Dataset, max_shard_bytes: int = MAX_SHARD_BYTES) -> int:
    """Shards needed to keep each one under `max_shard_bytes`.

    Sized on the in-memory Arrow table, which is larger than the compressed parquet, so the
    files come out under the limit rather than over it.
    """
    if len(ds) == 0:
        return 1
    return max(1, min(len(ds), math.ceil(rows_nbytes(ds) / max_shard_bytes)))


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def check_config_name(name: str) -> None:
    """A Hub config name a build can write; a build checks `--hub-config` with it before it starts."""
    if not _CONFIG_NAME.match(name):
        raise UserError(f"config name {name!r}: use letters, digits, '_', '.', '-'")


def _check_names(configs: Configs, images: Mapping[str, Any]) -> None:
    if not configs:
        raise UserError("no configs to write")
    for name, splits in configs.items():
        check_config_name(name)
        if not splits:
            raise UserError(f"config {name!r} has no splits")
        for split in splits:
            if not _SPLIT_NAME.match(split):
                raise UserError(f"split name {split!r} in config {name!r}: use letters, digits and '_'")
    for image in images:
        if not _IMAGE_NAME.match(image):
            raise UserError(f"image name {image!r}: a plain file name ending in .png")


# ---------------------------------------------------------------------------------------------
# The folder


def _prepare_target(folder: Path) -> None:
    """Refuse to replace a folder that holds anything this module did not write: a mistyped
    path must not wipe someone's directory."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in _OWNED_ENTRIES)
    if foreign:
        raise FileExistsError(f"{folder} holds files that are not a Hub folder's ({', '.join(foreign)}); choose an empty folder")


def _write_shards(root: Path, configs: Configs, max_shard_bytes: int) -> dict[str, int]:
    """Write every split as parquet shards; return the bytes written per config."""
    written: dict[str, int] = {}
    for name, splits in configs.items():
        config_dir = root / DATA_DIR / name
        config_dir.mkdir(parents=True)
        written[name] = 0
        for split, ds in splits.items():
            count = shard_count(ds, max_shard_bytes)
            for index in range(count):
                path = config_dir / shard_name(split, index, count)
                flattened(ds.shard(num_shards=count, index=index, contiguous=True)).to_parquet(str(path))
                written[name] += path.stat().st_size
    return written


def _write_images(root: Path, images: Mapping[str, bytes | Path]) -> None:
    if not images:
        return
    image_dir = root / IMAGES_DIR
    image_dir.mkdir()
    for name, content in images.items():
        target = image_dir / name
        if isinstance(content, (bytes, bytearray)):
            target.write_bytes(bytes(content))
        else:
            shutil.copyfile(content, target)


# What cards of older m1data versions said where the repo id goes (``<org>/m1K``).
_REPO_PLACEHOLDER = re.compile(r"<org>/[A-Za-z0-9_.-]+")


def fill_repo_id(body: str, repo_id: str, name: str | None = None) -> str:
    """The card body naming the repo it is published to. A card's loading examples load the
    dataset by the name its `NAMED_REPO_MARK` line gives (the repo id the build was given, or the
    dataset's name alone: ``load_dataset("m1K")``, ``--dataset_name m1K``); those become `repo_id`
    and the line goes. Older cards: under `REPO_ID_MARK` the examples name the dataset by `name`;
    ``<org>/NAME`` placeholders are replaced too."""
    body = _REPO_PLACEHOLDER.sub(repo_id, body)
    named = NAMED_REPO_MARK.search(body)
    if named:
        name, body = named[1], NAMED_REPO_MARK.sub("", body)
    elif name and REPO_ID_MARK in body:
        body = re.sub(rf"{re.escape(REPO_ID_MARK)}\n?", "", body)
    else:
        return body
    bare = re.escape(name)
    body = re.sub(rf'load_dataset\("{bare}"', f'load_dataset("{repo_id}"', body)
    return re.sub(rf"--dataset_name {bare}(?![\w./-])", f"--dataset_name {repo_id}", body)


OTHER_CONFIGS_MARK = "<!-- m1data: other configs of this repo -->"


def note_other_configs(body: str, kept: list[str], default: str | None, ours: list[str]) -> str:
    """`body` with a note under its Quick start heading when the repo keeps configs this card does
    not describe: the card replaces the repo's README, and without the note it would read as the
    description of every config in the repo, and of what `load_dataset(repo)` returns when the
    default stayed with one of them. A note from an earlier publish is replaced."""
    body = re.sub(rf"{re.escape(OTHER_CONFIGS_MARK)}\n.*?\n\n", "", body, flags=re.S)
    if not kept:
        return body
    names = ", ".join(f"`{n}`" for n in kept)
    note = (f"{OTHER_CONFIGS_MARK}\n**This repository also holds config(s) {names}, from other builds. This card "
            f"describes only {', '.join(f'`{n}`' for n in ours)}: its counts, models, decontamination and licences "
            "are not those of the other configs.**")
    if default and default not in ours:
        note += f" `load_dataset` without `name=` returns `{default}`, not these rows."
    heading = "## Quick start\n\n"
    if heading not in body:
        return f"{note}\n\n{body}"
    return body.replace(heading, f"{heading}{note}\n\n", 1)


def write_hub_folder(
    folder: str | Path,
    configs: Configs,
    card: str,
    images: Mapping[str, bytes | Path] | None = None,
    *,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """Write `configs` ({config: {split: Dataset}}) as a folder ready to upload, and return it.

    The card's ``configs:`` and ``dataset_info:`` are written here (`cardmeta.data_metadata`) from
    the files actually written, replacing any the card carries, so they cannot disagree with the
    data whatever the card template said. The folder
    is built beside the target and swapped in at the end, so a failure leaves the old one.
    """
    folder = Path(folder)
    images = images or {}
    _check_names(configs, images)
    _prepare_target(folder)
    with storage_errors(folder):  # a full or read-only disk: one line naming the folder; the old one stays
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(folder)
        staging = Path(tempfile.mkdtemp(prefix=_aside_prefix(folder, "staging"), dir=folder.parent))
        try:
            sizes = _write_shards(staging, configs, max_shard_bytes)
            _write_images(staging, images)
            readme = card_with_metadata(card, data_metadata(configs, sizes))
            (staging / CARD_FILE).write_text(readme, encoding="utf-8")
            _swap_in(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return folder


def _aside_prefix(folder: Path, role: str) -> str:
    """The name a write gives its hidden folders beside `folder` (the new one being written, the
    old one on its way out): they carry the writer's pid, so a later write can tell what a killed
    writer left from what a live one is still using."""
    return f".{folder.name}.{role}-{os.getpid()}-"


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace `folder` by `staging` with two renames, and only then delete the old folder. Why not
    delete first: a kill during the deletion left a Hub folder with some of its shards gone, which
    `load_dataset` read as the whole dataset. Now a kill leaves the old folder, the new one, or
    (between the two renames) none; never part of one. The new folder's files are on disk before
    it is renamed in, and the renames before this returns (`m1data.durable`). The renames hold the
    parent folder (`folder_lock`): two writes of one folder at once (two builds given the same
    --hub-out) take turns, and the folder is the one written last, whole; unguarded, one renamed
    its folder in while the other was between its renames, and the other failed (ENOTEMPTY)."""
    fsync_tree(staging)
    old = None
    with folder_lock(folder.parent):
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=_aside_prefix(folder, "old"), dir=folder.parent))
            folder.rename(old / folder.name)
        staging.rename(folder)
        fsync_folder(folder.parent)
    if old is not None:
        shutil.rmtree(old)


def _remove_leftovers(folder: Path) -> None:
    """Delete the hidden folders (`_aside_prefix`) that writes killed before their end left beside
    `folder`: a full copy of a dataset each. A folder whose writer is still alive is left alone."""
    for role in ("staging", "old"):
        for leftover in folder.parent.glob(f"{glob.escape(f'.{folder.name}.{role}-')}*"):
            pid = leftover.name[len(f".{folder.name}.{role}-"):].split("-", 1)[0]
            if leftover.is_dir() and pid.isdigit() and not other_process_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Publishing


@dataclass
class PlannedFile:
    path_in_repo: str
    size: int


@dataclass
class PublishPlan:
    """What a publish does (or, in a dry run, would do). Holds no credentials."""

    repo_id: str
    private: bool
    dry_run: bool
    files: list[PlannedFile] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    replaced_configs: list[str] = field(default_factory=list)
    kept_remote_configs: list[str] = field(default_factory=list)
    implicit_config: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    default_config: str | None = None
    remote_read: bool = False
    remote_exists: bool = True
    remote_error: str | None = None
    commit_url: str | None = None
    local_paths: list[str] = field(default_factory=list)
    secret_found: str | None = None  # a dry run's "refusing to upload: X contains Y" (the label, never the value)
    left_out: list[str] = field(default_factory=list)  # files of the folder not uploaded (`_files_to_upload`)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        head = "DRY RUN: nothing was sent" if self.dry_run else f"published: {self.commit_url or 'commit made'}"
        created = "will be created" if self.dry_run else "created"
        state = "exists" if self.remote_exists else created
        if not self.remote_read:
            state = "not known: the repo could not be read"
        lines = [
            head,
            f"repo: {self.repo_id} (dataset, {'private' if self.private else 'public'} if created; {state})",
            f"upload: {len(self.files)} file(s), {human_size(self.total_bytes)}",
            *[f"  + {f.path_in_repo}  {human_size(f.size)}" for f in self.files],
        ]
        lines += [f"  - {path}  (stale shard m1data wrote for a replaced config)" for path in self.deletions]
        lines += [f"  not uploaded: {path}  (no config reads it; not an image of the card)" for path in self.left_out]
        if self.local_paths:
            lines.append(f"REFUSED: the folder holds {len(self.local_paths)} absolute local path(s); a publish would "
                         f"stop ({REEXPORT}):")
            lines += [f"    {where}" for where in self.local_paths[:MAX_LISTED_PATHS]]
        if self.secret_found:
            lines.append(f"REFUSED: a publish would stop, {self.secret_found}")
        lines.append(f"configs after the commit: {', '.join(self.configs)} (default: {self.default_config})")
        if not self.remote_read:
            lines.append(f"  the repo could not be read ({self.remote_error}): what would be replaced is unknown")
            return "\n".join(lines)
        lines.append(f"  replaced: {', '.join(self.replaced_configs) or 'none'}")
        lines.append(f"  kept from the repo: {', '.join(self.kept_remote_configs) or 'none'}")
        if self.implicit_config:
            lines.append(
                f"  the repo's data had no configs: entry ({len(self.implicit_config)} file(s) found by file-name "
                "conventions); the card now lists them as config 'default', so they stay reachable"
            )
        if self.unreachable:
            lines.append("  left in the repo, not deleted (m1data did not write them), but read by no config after:")
            lines += [f"    {path}" for path in self.unreachable]
        return "\n".join(lines)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _local_files(folder: Path) -> list[PlannedFile]:
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    return [PlannedFile(p.relative_to(folder).as_posix(), p.stat().st_size) for p in paths]


def _split_files(entries: list[dict[str, Any]], files: list[str]) -> dict[tuple[str, str], set[str]]:
    """{(config, split): the files its `data_files` select}, a split's patterns taken together (a
    list of paths is one train split), resolved once for what is uploaded and what is checked."""
    patterns: dict[tuple[str, str], list[Any]] = {}
    for entry in entries:
        items = entry.get("data_files")
        for item in items if isinstance(items, list) else [items]:
            split = item.get("split", "train") if isinstance(item, dict) else "train"
            patterns.setdefault((entry["config_name"], split), []).append(item)
    parts = list(patterns)
    reached = _reachable([{"config_name": str(i), "data_files": patterns[part]} for i, part in enumerate(parts)], files)
    return {part: reached[str(i)] for i, part in enumerate(parts)}


def _files_to_upload(files: list[PlannedFile], splits: dict[tuple[str, str], set[str]]
                     ) -> tuple[list[PlannedFile], list[str]]:
    """(what is uploaded, what is left out): the card, the files its configs read, and its images.
    Why not every file: a folder is a folder, and a `.env`, notes or a notebook's checkpoints put
    beside the data were uploaded with it (publishing audit)."""
    reached = set().union(*splits.values())

    def ours(path: str) -> bool:
        parts = path.split("/")
        image = parts[0] == IMAGES_DIR and len(parts) == 2 and not parts[1].startswith(".")
        return path == CARD_FILE or path in reached or image

    return [f for f in files if ours(f.path_in_repo)], [f.path_in_repo for f in files if not ours(f.path_in_repo)]


def _check_data(folder: Path, metadata: dict[str, Any], splits: dict[tuple[str, str], set[str]],
                uploads: list[str]) -> None:
    """Every split of every config reads at least one shard, every shard is a parquet file, and
    the rows are as many as the card's `dataset_info` says. Why: a folder missing a shard was
    published whole, its card counting rows `load_dataset` then could not find, and a 0-byte
    shard stopped the publish with pyarrow's traceback."""
    import pyarrow.parquet as pq

    stated = {(info.get("config_name", "default"), split.get("name")): split.get("num_examples")
              for info in as_config_list(metadata.get("dataset_info"))
              for split in info.get("splits") or [] if isinstance(split, dict)}
    for (config, split), reached in splits.items():
        if not reached:
            raise UserError(f"{folder}: config {config!r} split {split!r} has no data file; write the folder again")
        rows = 0
        for path in sorted(reached):
            try:
                rows += pq.read_metadata(folder / path).num_rows
            except Exception as err:  # pyarrow's ArrowInvalid, an OSError: not a readable parquet file
                raise UserError(f"{folder / path}: not a readable parquet file ({type(err).__name__}: {err}); "
                                "write the folder again") from None
        expected = stated.get((config, split))
        if isinstance(expected, int) and expected != rows:
            raise UserError(f"{folder}: config {config!r} split {split!r} has {rows:,} rows in its files but its "
                            f"card says {expected:,}; write the folder again")
    body = split_card((folder / CARD_FILE).read_text(encoding="utf-8"))[1]
    missing = sorted({p for p in re.findall(rf"\({IMAGES_DIR}/[^)\s]+\)", body)} - {f"({p})" for p in uploads})
    if missing:
        raise UserError(f"{folder}: the card shows {missing[0][1:-1]}, which is not in the folder; "
                        "write the folder again")


def _default_name(entries: list[dict[str, Any]]) -> str | None:
    """The config `load_dataset(repo)` opens: the one flagged default, else one named "default"."""
    flagged = [e["config_name"] for e in entries if e.get("default")]
    if flagged:
        return flagged[0]
    names = [e["config_name"] for e in entries]
    return "default" if "default" in names else None


def merge_configs(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union by config_name: ours replace same-named entries in place, theirs are kept, ours that
    are new go last.

    Why the default flag can move away from ours: if a config we leave alone is already the
    repo's default, changing it would silently change what `load_dataset(repo)` returns to
    everyone who uses that repo, so ours gives up its flag.
    """
    ours_by_name = {e["config_name"]: dict(e) for e in ours}
    untouched = [dict(e) for e in theirs if e["config_name"] not in ours_by_name]
    if _default_name(untouched) is not None:
        for entry in ours_by_name.values():
            entry.pop("default", None)
    merged = []
    for entry in theirs:
        name = entry["config_name"]
        merged.append(ours_by_name.pop(name) if name in ours_by_name else dict(entry))
    return merged + list(ours_by_name.values())


def merge_metadata(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys: ours win, keys only the remote card has are kept; ``configs`` and
    ``dataset_info`` are unions per config (see `merge_configs`)."""
    merged = {**theirs, **ours}
    merged["configs"] = merge_configs(ours.get("configs") or [], theirs.get("configs") or [])
    merged["dataset_info"] = merge_configs(
        as_config_list(ours.get("dataset_info")), as_config_list(theirs.get("dataset_info"))
    )
    for entry in merged["dataset_info"]:
        entry.pop("default", None)
    ours_names = {e["config_name"] for e in ours.get("configs") or []}
    if any(e["config_name"] not in ours_names for e in merged["configs"]):
        merged.update(_repo_wide(ours, theirs, merged["dataset_info"]))
    return merged


def _repo_wide(ours: dict[str, Any], theirs: dict[str, Any], infos: list[dict[str, Any]]) -> dict[str, Any]:
    """The header fields that describe the whole repo, for a repo that keeps configs of other
    builds: ours alone describe only our rows (a sample build's `apache-2.0` over another
    build's MedMCQA rows, `n<1K` over m23K's rows). Lists are joined, the size is the largest
    config's (from ``dataset_info``), and two different licences make the licence `other`."""
    out: dict[str, Any] = {}
    for key in ("source_datasets", "tags", "task_categories", "language"):
        joined = list(dict.fromkeys([*(theirs.get(key) or []), *(ours.get(key) or [])]))
        if joined:
            out[key] = joined
    rows = [sum(int(s.get("num_examples") or 0) for s in e.get("splits") or []) for e in infos]
    if rows:
        out["size_categories"] = [size_category(max(rows))]
    if theirs.get("license") and ours.get("license") and theirs["license"] != ours["license"]:
        out["license"] = "other"
        out["license_name"] = ours.get("license_name") or theirs.get("license_name") or "several-licences"
        out["license_link"] = "README.md#licences"
    return out


_SHARD = re.compile(r"^(?P<split>\w+(\.\w+)*)-\d{5}-of-\d{5}\.parquet$")


def _written_by_m1data(entry: Mapping[str, Any]) -> bool:
    """A config entry in the layout write_hub_folder gives it: one `data/<config>/<split>-*.parquet`
    glob per split."""
    files = entry.get("data_files")
    name = entry.get("config_name")
    return isinstance(files, list) and bool(files) and all(
        isinstance(f, dict) and f.get("path") == split_glob(name, str(f.get("split"))) for f in files
    )


def _stale_shards(remote_files: list[str], theirs: list[dict[str, Any]], our_configs: list[str],
                  uploads: set[str]) -> list[str]:
    """Remote shards this commit replaces and may delete: only those m1data wrote (a shard name
    under `data/<config>/` of a same-named remote config in m1data's layout) that this commit does
    not rewrite; a config that shrank from 3 shards to 2 would otherwise keep its third one."""
    ours = {e["config_name"] for e in theirs if e.get("config_name") in our_configs and _written_by_m1data(e)}
    stale = []
    for path in remote_files:
        folder, _, name = path.rpartition("/")
        config = folder.removeprefix(f"{DATA_DIR}/")
        if folder.startswith(f"{DATA_DIR}/") and config in ours and _SHARD.match(name) and path not in uploads:
            stale.append(path)
    return sorted(stale)


def _mirror(files: Iterable[str], root: Path) -> None:
    """Empty stand-ins for a repo's files, so that `datasets` can match its own patterns against
    them (what a repo's card makes loadable is decided by file names alone)."""
    for path in files:
        parts = Path(path).parts
        if not parts or Path(path).is_absolute() or ".." in parts:
            continue
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


def _patterns(data_files: Any) -> list[str]:
    """Every path pattern of a card's `data_files` (a string, a list, or a list of {split, path})."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return _patterns(data_files.get("path"))
    if isinstance(data_files, list):
        return [p for item in data_files for p in _patterns(item)]
    return []


def _reachable(entries: list[dict[str, Any]], files: Iterable[str]) -> dict[str, set[str]]:
    """{config: the files its data_files select}, resolved by `datasets` itself."""
    from datasets.data_files import resolve_pattern

    reached: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _mirror(files, root)
        for entry in entries:
            found: set[str] = set()
            for pattern in _patterns(entry.get("data_files")):
                try:
                    found |= {Path(p).relative_to(root).as_posix() for p in resolve_pattern(pattern, str(root))}
                except FileNotFoundError:  # a pattern that matches nothing
                    continue
            reached[entry["config_name"]] = found
    return reached


def _implicit_configs(remote_files: list[str]) -> list[dict[str, Any]]:
    """The config `datasets` makes up for a repo whose card lists none (push_to_hub without a
    card, a hand upload): its data found by file-name conventions, listed file by file so that a
    card with `configs:` (which switches those conventions off) keeps it reachable."""
    from datasets.data_files import get_data_patterns

    data = [f for f in remote_files if f != CARD_FILE and not f.startswith(".")]
    if not data:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        _mirror(data, Path(tmp))
        try:
            patterns = get_data_patterns(tmp)
        except FileNotFoundError:  # datasets' EmptyDatasetError: nothing it would load
            return []
    splits = [{"config_name": split, "data_files": globs} for split, globs in patterns.items()]
    files = _reachable(splits, data)
    listed = [{"split": split, "path": sorted(found)} for split, found in files.items() if found]
    return [{"config_name": "default", "data_files": listed}] if listed else []


@dataclass
class _Remote:
    """What the repo holds now, read before anything is written."""

    exists: bool
    sha: str | None = None
    files: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def check_repo_id(repo_id: str) -> None:
    """A malformed repo id is the user's to fix, said before anything is read or sent. One with
    an '@' is a git remote's URL with the token in it (`https://me:hf_...@huggingface.co/...`),
    pasted in place of the id: said without showing it, since the message would print the token."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from m1data.redact import has_userinfo

    if has_userinfo(repo_id):
        raise UserError("--repo-id is a URL with credentials in it (not shown): give the repo id, owner/name; "
                        "the token comes from HF_TOKEN or `hf auth login`")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"--repo-id {repo_id!r} is not a Hub repo id (owner/name): {err}") from None


def _read_remote(api: Any, repo_id: str, token: str | None = None) -> _Remote:
    """The repo's files and card YAML at one revision. A card whose YAML cannot be read stops
    the publish here, before the repo is created or touched, in a line without the Hub token
    (`_shown`): the YAML error quotes the card's lines, and a server or mirror that echoes its
    request headers writes the token into the card it serves. For the same reason the card is
    downloaded into a temporary folder, not huggingface_hub's cache: it is read once, and a copy
    left in the cache would keep whatever the server wrote into it."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return _Remote(exists=False)
    files = [s.rfilename for s in (info.siblings or [])]
    metadata: dict[str, Any] = {}
    if CARD_FILE in files:
        with tempfile.TemporaryDirectory(prefix="m1data-card-") as scratch:
            card = api.hf_hub_download(repo_id, CARD_FILE, repo_type="dataset", revision=info.sha, cache_dir=scratch)
            text = Path(card).read_text(encoding="utf-8")
        try:
            metadata, _ = split_card(text)
        except (yaml.YAMLError, ValueError) as err:
            problem = _shown(" ".join(str(err).split()), token)
            raise UserError(
                f"{repo_id}: its {CARD_FILE} has a malformed YAML header ({problem}); fix the card on the Hub "
                "first (nothing was changed)"
            ) from None
    return _Remote(exists=True, sha=info.sha, files=files, metadata=metadata)


def _file_contains(path: Path, needle: bytes, chunk: int = 1 << 24) -> bool:
    overlap = len(needle) - 1
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-overlap:] if overlap else b""
    return False


def _run_key_names(folder: Path) -> set[str]:
    """The key variables (`api_key_env`) named by the stage configs of the run directory a build
    wrote `folder` into (RUN_DIR/hub), if it sits in one."""
    from m1data.redact import key_env_names

    names: set[str] = set()
    for manifest in folder.resolve().parent.glob("[0-9][0-9]_*/manifest.json"):
        try:
            names |= key_env_names(json.loads(manifest.read_text(encoding="utf-8")).get("config"))
        except (ValueError, AttributeError):  # an unreadable manifest names nothing; the build reports it
            continue
    return names


def _secrets(token: str | None, folder: Path, key_envs: Iterable[str] = ()) -> dict[str, bytes]:
    """{what to call it: value} of every secret the upload must not contain: the Hub token HfApi
    will use (argument, HF_TOKEN or saved login), the values of the key variables the run's
    configs name (and `key_envs`), and of every `*_API_KEY` variable set. Read locally, kept only
    to search the upload; values under 4 characters and placeholders are skipped (they would match
    by chance), a 4-7 character one is searched for as a whole token (`is_checkable_secret`)."""
    from m1data.redact import configured_secrets, is_checkable_secret

    found: dict[str, bytes] = {}
    token = hub_token(token)
    if token and is_checkable_secret(token):
        found["your Hub token"] = token.encode()
    for name, value in configured_secrets({*_run_key_names(folder), *key_envs}).items():
        found[f"the value of {name}"] = value.encode()
    return found


def _refuse_if_secret_inside(folder: Path, files: list[PlannedFile], secrets: Mapping[str, bytes]) -> None:
    """Last guard before anything leaves the machine: no uploaded file may contain a secret. The
    message names the variable, never the value. A parquet file's values are searched too: its
    pages are compressed, and a value that repeats part of an earlier one is stored as a
    back-reference, so a secret in it need not appear as one run of bytes. The strings of parquet
    and text files are searched for every form of a secret that m1data.redact masks
    (`holds_secret`: percent-encoded, escaped, base64), not only as it is: a folder written
    before those forms were masked may hold one (a server's error that quoted the key
    percent-encoded, a Basic credential). A short secret (under `MIN_SECRET_LENGTH`) is searched
    for in those strings only, as a whole token: in a file's bytes (an image, a compressed page) its
    few characters would match by chance."""
    from m1data.redact import MIN_SECRET_LENGTH

    for planned in files:
        path = folder / planned.path_in_repo
        for label, secret in secrets.items():
            if len(secret) >= MIN_SECRET_LENGTH and _file_contains(path, secret):
                raise UserError(f"refusing to upload: {planned.path_in_repo} contains {label}")
        for where, label in _strings_holding_secrets(path, secrets):
            shown = f" ({where})" if where else ""
            raise UserError(f"refusing to upload: {planned.path_in_repo}{shown} contains {label}")


def _strings_holding_secrets(path: Path, secrets: Mapping[str, bytes]) -> Iterator[tuple[str, str]]:
    """(where, label) for every string of a file (`_file_strings`) that holds one of `secrets` in
    a form m1data.redact masks (`holds_secret`), with the label of the first one it holds. Of a
    parquet file, only the strings Arrow matches with the secrets' hint (`secrets_hint`) are
    checked: no other can hold one (its docstring says why). Why: `holds_secret` on every string
    took 7-11 s per 100K rows of traces (one or two keys; 20-30 s on a busy machine), paid by
    every upload with a key configured."""
    from m1data.redact import holds_secret, secrets_hint

    texts = {label: secret.decode("utf-8", "replace") for label, secret in secrets.items()}
    hint = secrets_hint(texts.values())
    if hint is None:  # no configured secret is one holds_secret finds in any text
        return
    strings = _parquet_strings_matching(path, hint) if path.suffix == ".parquet" else _file_strings(path)
    for where, text in strings:
        label = next((label for label, secret in texts.items() if holds_secret(text, secret)), None)
        if label is not None:
            yield where, label


REEXPORT = ("re-export the run: the same `m1data build` command again skips its finished stages and rewrites "
            "the folder with local paths cut to file names, except in the dataset's own text (question, options, "
            "answers, prompts, reasoning), which is published as built: take such a path out of those rows")
MAX_LISTED_PATHS = 20  # local paths a dry run lists (the count says how many in all)
_TEXT_SUFFIXES = {".md", ".json", ".jsonl", ".txt", ".yaml", ".yml", ".csv"}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _file_strings(path: Path) -> Iterable[tuple[str, str]]:
    """(where, text) of every string a file of the folder publishes: a parquet file's values, column
    by column (compressed pages hide them from a byte search); a text file whole."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for name in table.column_names:
            for row, value in enumerate(table.column(name).to_pylist()):
                for text in _strings(value):
                    yield f"column {name!r}, row {row}", text
    elif path.suffix in _TEXT_SUFFIXES:
        yield "", path.read_text(encoding="utf-8", errors="replace")


def local_paths_inside(folder: str | Path, files: Iterable[PlannedFile] | None = None) -> list[str]:
    """`FILE (where): PATH` for every absolute local path in the files of `folder` that would be
    uploaded (see m1data.redact.local_paths); empty when there is none."""
    from m1data.redact import local_paths

    folder = Path(folder)
    found = []
    for planned in files if files is not None else _local_files(folder):
        path = folder / planned.path_in_repo
        strings = _parquet_strings_that_may_hold_a_path(path) if path.suffix == ".parquet" else _file_strings(path)
        for where, text in strings:
            found += [f"{planned.path_in_repo}{f' ({where})' if where else ''}: {p}" for p in local_paths(text)]
    return found


def _parquet_strings_that_may_hold_a_path(path: Path) -> Iterable[tuple[str, str]]:
    """What `_file_strings` gives of a parquet file, for the strings only that match the hint of
    a local path (`m1data.redact.public_scrub_hints`): the others hold none. Why: `local_paths`
    on every string of every row took ~55 s per 100K rows of traces (Python's regex on long texts
    that hold a `\\boxed`), and a dry run pays it before it lists anything."""
    from m1data.redact import public_scrub_hints

    return _parquet_strings_matching(path, public_scrub_hints()[0])


def _parquet_strings_matching(path: Path, pattern: str) -> Iterator[tuple[str, str]]:
    """(where, text) of the strings of a parquet file (at any depth of a column's values, as
    `_file_strings` gives them) that the RE2 `pattern` matches, column by column and row by row:
    Arrow tests every string (`m1data.schema.strings_matching`) and only those that match become
    Python strings."""
    import pyarrow.parquet as pq

    from m1data.schema import strings_matching

    table = pq.read_table(path)
    for name in table.column_names:
        start = 0
        for chunk in table.column(name).chunks:
            for row, text in sorted(strings_matching(chunk, pattern), key=lambda hit: hit[0]):
                yield f"column {name!r}, row {start + row}", text
            start += len(chunk)


def _not_a_hub_folder(folder: Path) -> str:
    """What `folder` is instead of a Hub-layout folder: a user most often gives the run folder
    (`runs/m1k`) for its Hub folder (`runs/m1k/hub`), which the old message, naming
    `write_hub_folder`, did not say."""
    if not folder.exists():
        return "no such folder; give the Hub-layout folder a build wrote (RUN_DIR/hub)"
    if not folder.is_dir():
        return "is a file; give the Hub-layout folder a build wrote (RUN_DIR/hub)"
    if (folder / "hub" / CARD_FILE).is_file():
        return f"a run folder, not its Hub-layout folder; publish {folder / 'hub'}"
    return f"no {CARD_FILE}: not a Hub-layout folder (a build writes one, RUN_DIR/hub; or write_hub_folder)"


def _check_folder(folder: Path) -> dict[str, Any]:
    card = folder / CARD_FILE
    if not card.is_file():
        raise FileNotFoundError(f"{folder}: {_not_a_hub_folder(folder)}")
    metadata, _ = split_card(card.read_text(encoding="utf-8"))
    if not metadata.get("configs"):
        raise UserError(f"{card}: its YAML has no configs: list")
    return metadata


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    api: Any | None = None,
    commit_message: str | None = None,
    key_envs: Iterable[str] = (),
) -> PublishPlan:
    """Upload a folder from `write_hub_folder` to dataset repo `repo_id` in one commit.

    The repo's files and card are read first, at one revision, and the commit is made against
    that revision (``parent_commit``), so a concurrent publish fails loudly instead of being merged
    over; the repo is created (if missing) only after that read succeeded. Only shards m1data
    wrote for a config it replaces are deleted; a foreign file that one of our globs would read is
    refused; data the repo's card did not list (found by file-name conventions) is listed as
    config `default` so it stays reachable. A dry run reads the repo the same way, so its plan
    says exactly what would be replaced, and writes nothing.
    """
    check_repo_id(repo_id)
    folder = Path(folder)
    ours = _check_folder(folder)
    local = _local_files(folder)
    splits = _split_files(ours["configs"], [f.path_in_repo for f in local])
    files, left_out = _files_to_upload(local, splits)
    _check_data(folder, ours, splits, [f.path_in_repo for f in files])
    if left_out:
        log.warning(f"not uploading {len(left_out)} file(s) of {folder} that no config reads and the card does not "
                    f"show: {', '.join(left_out[:MAX_LISTED_PATHS])}")
    our_configs = [e["config_name"] for e in ours["configs"]]
    plan = PublishPlan(repo_id=repo_id, private=private, dry_run=dry_run, files=files, left_out=left_out,
                       local_paths=local_paths_inside(folder, files))
    if plan.local_paths and not dry_run:
        more = f" (and {len(plan.local_paths) - 1} more; `publish --dry-run` lists them)" if len(plan.local_paths) > 1 else ""
        raise UserError(f"refusing to upload: {plan.local_paths[0]} is an absolute local path{more}; "
                        f"{REEXPORT}")

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    token = hub_token(token)
    secrets = _secrets(token, folder, key_envs)
    try:  # searched in a dry run too, which said nothing of a key in the folder that a publish refused
        _refuse_if_secret_inside(folder, files, secrets)
    except UserError as refusal:
        if not dry_run:
            raise
        plan.secret_found = str(refusal)
    api = api if api is not None else HfApi(token=token or False)  # False: HfApi must not read it again
    try:
        remote = _read_remote(api, repo_id, token)
    except ValueError:
        raise
    except Exception as err:  # network, offline mode, auth: a dry run still shows the local side
        if not dry_run:
            with _hub_refusals(repo_id, token):  # the Hub's refusal as one masked line; anything else as is
                raise
        plan.configs, plan.default_config = our_configs, _default_name(ours["configs"])
        plan.remote_error = _hub_error_text(err, token)
        return plan

    theirs = dict(remote.metadata)
    implicit = [] if theirs.get("configs") else _implicit_configs(remote.files)
    if implicit:
        theirs["configs"] = implicit
    their_configs = list(theirs.get("configs") or [])
    merged = merge_metadata(ours, theirs)
    uploads = {f.path_in_repo for f in files}
    plan.deletions = _stale_shards(remote.files, their_configs, our_configs, uploads)
    after = (set(remote.files) - set(plan.deletions)) | uploads
    _refuse_foreign_files(ours["configs"], after, uploads)

    before = set().union(*_reachable(their_configs, remote.files).values()) if their_configs else set()
    still = set().union(*_reachable(merged["configs"], after).values())
    remote_names = [e["config_name"] for e in their_configs]
    plan.remote_read, plan.remote_exists = True, remote.exists
    plan.configs = [e["config_name"] for e in merged["configs"]]
    plan.replaced_configs = [n for n in remote_names if n in our_configs]
    plan.kept_remote_configs = [n for n in remote_names if n not in our_configs]
    plan.implicit_config = sorted(_reachable(implicit, remote.files)["default"]) if implicit else []
    plan.unreachable = sorted(before - still - set(plan.deletions))
    plan.default_config = _default_name(merged["configs"])
    _, body = split_card((folder / CARD_FILE).read_text(encoding="utf-8"))
    body = note_other_configs(fill_repo_id(body, repo_id, ours.get("pretty_name")), plan.kept_remote_configs,
                              plan.default_config, our_configs)
    readme = card_with_metadata(body, merged).encode("utf-8")
    plan.files = [PlannedFile(f.path_in_repo, len(readme) if f.path_in_repo == CARD_FILE else f.size) for f in files]
    if dry_run:
        return _without_token(plan, token)
    from m1data.redact import holds_secret

    for label, secret in secrets.items():  # holds_secret: a short secret as a whole token only
        if holds_secret(readme.decode("utf-8", "replace"), secret.decode("utf-8", "replace")):
            raise UserError(f"refusing to upload: the merged README.md contains {label}")

    operations: list[Any] = [
        CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(folder / f.path_in_repo))
        for f in files
        if f.path_in_repo != CARD_FILE
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=readme))
    operations += [CommitOperationDelete(path_in_repo=path) for path in plan.deletions]

    log.info(f"creating or reusing dataset repo {repo_id}")
    with _hub_refusals(repo_id, token):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        parent = remote.sha
        if not remote.exists:  # created just now: commit on top of its first commit
            parent = api.repo_info(repo_id, repo_type="dataset").sha
        log.info(f"committing {len(operations)} operation(s) to {repo_id}")
        try:
            commit = api.create_commit(
                repo_id,
                operations,
                commit_message=commit_message or f"Publish {', '.join(our_configs)} with m1data",
                repo_type="dataset",
                parent_commit=parent,
            )
        except ValueError as err:  # huggingface_hub's "Invalid metadata in README.md" (the Hub's validate-yaml)
            if "README.md" not in str(err):
                raise
            made = "" if remote.exists else f"; {repo_id} was created for it and is left empty"
            raise UserError(f"the Hub refused the card's YAML header, so nothing was committed{made}: "
                            f"{_hub_error_text(err, token)}") from None
    plan.commit_url = getattr(commit, "commit_url", None) or getattr(commit, "oid", None)
    return plan


def _hub_error_text(err: BaseException, token: str | None = None) -> str:
    """`err` in one line that may be shown (`_shown`). Why: huggingface_hub's HTTP errors quote the
    URL (an HF_ENDPOINT may carry credentials) and the server's error body, which a server or
    proxy that echoes request headers fills with the token."""
    return _shown(" ".join(f"{type(err).__name__}: {err}".split()), token)


def _shown(text: str, token: str | None) -> str:
    """`text` with the Hub token HfApi uses (`token`, else HF_TOKEN or the saved login) and any
    Bearer or Basic credential masked, and `user:password@` removed from URLs: what the Hub said,
    as it may be shown. Why the saved login too: the command line's last guard masks the values of
    key variables (HF_TOKEN), not a token read from a file."""
    from m1data.redact import mask_secret, strip_userinfo

    return mask_secret(strip_userinfo(text), hub_token(token)) or ""


def hub_token(token: str | None = None) -> str | None:
    """The Hub token to use: `token`, else HF_TOKEN or the saved login (huggingface_hub's
    `get_token`); None when there is none. Why not `get_token` alone: it takes only a missing
    token file for "not logged in", so where HOME (or HF_HOME) is a file, not a folder (a service
    account's HOME=/dev/null), reading `<home>/.cache/huggingface/token` raised
    NotADirectoryError and publish stopped with a traceback. No file can exist under a file, so
    that is "not logged in" too; a token path that exists but cannot be read (a folder, no
    permission) is one line naming it, since a login the user made would otherwise be ignored."""
    if token:
        return token
    from huggingface_hub import constants, get_token

    try:
        return get_token()
    except NotADirectoryError:
        return None
    except OSError as err:
        raise UserError(f"cannot read the saved Hub token {constants.HF_TOKEN_PATH}: {err.strerror}; "
                        "set HF_TOKEN, or log in again with `hf auth login`") from None


def _without_token(plan: PublishPlan, token: str | None) -> PublishPlan:
    """`plan` with the Hub token masked out of what it took from the repo (config and file names,
    `_shown`). Why: a dry run prints them, and a server or mirror that echoes its request headers
    names them after the token; a real publish refuses such a card (its last check) before this."""
    for name in ("deletions", "configs", "replaced_configs", "kept_remote_configs", "implicit_config", "unreachable"):
        setattr(plan, name, [_shown(value, token) for value in getattr(plan, name)])
    plan.default_config = _shown(plan.default_config, token) if plan.default_config else plan.default_config
    return plan


@contextlib.contextmanager
def _hub_refusals(repo_id: str, token: str | None) -> Iterator[None]:
    """The Hub's HTTP refusals (401, 403, 409, 5xx) and offline mode's refusal (which quotes the
    URL) as one UserError line (`_hub_error_text`), not an internal error whose traceback prints
    the library's message unmasked."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except (HfHubHTTPError, OfflineModeIsEnabled) as err:
        raise UserError(f"the Hub refused {repo_id}: {_hub_error_text(err, token)}") from None


def _refuse_foreign_files(our_entries: list[dict[str, Any]], after: set[str], uploads: set[str]) -> None:
    """Our configs must read exactly the files we upload: a file somebody else put where one of
    our globs reads would be mixed into our data, and deleting it is not ours to do."""
    for config, reached in _reachable(our_entries, after).items():
        foreign = sorted(reached - uploads)
        if foreign:
            raise UserError(
                f"refusing to publish: config {config!r} would also read {', '.join(foreign)}, which m1data did not "
                "write; remove it from the repo or publish under another config name (build --hub-config NAME)"
            )


__all__ = [
    "MAX_SHARD_BYTES",
    "PlannedFile",
    "PublishPlan",
    "local_paths_inside",
    "merge_configs",
    "merge_metadata",
    "publish",
    "shard_count",
    "shard_name",
    "write_hub_folder",
]
