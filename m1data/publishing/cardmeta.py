"""A dataset card's YAML header: reading and writing it, and the part that describes the data.

Why a module of its own: the card renderer (m1data.cards) writes a header, the Hub folder writer
and the publisher (m1data.publishing.hub) read and rewrite it, and neither should need the other for that.
The part of the header that maps configs and splits to parquet files (``configs:``) and gives
their features and sizes (``dataset_info:``) is computed by one function, `data_metadata`, from
the Datasets being published: the card renderer calls it for a card on its own, and the folder
writer calls it once from the files it wrote (which also knows their download size). An export
(m1data.publishing.export) leaves it to the folder writer, so the Hub folder's README and its card never
carry two computations of it.

Also here, since both sides name them: the folder layout the ``data_files`` globs and the card's
image links point into (``data/<config>/<split>-*.parquet``, ``images/``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import yaml

from m1data.errors import UserError

__all__ = [
    "BUILD_KEY",
    "CARD_FILE",
    "DATA_DIR",
    "IMAGES_DIR",
    "NAMED_REPO_MARK",
    "REPO_ID_MARK",
    "Configs",
    "as_config_list",
    "card_with_metadata",
    "configs_metadata",
    "data_metadata",
    "dataset_info_metadata",
    "hub_folder_dataset",
    "join_card",
    "repo_id_mark",
    "rows_nbytes",
    "size_category",
    "split_card",
    "split_glob",
]

# Written above a card's loading examples (`repo_id_mark`): the name they load the dataset by (the
# repo id the build was given, or the dataset's name alone); `m1data.publishing.hub.fill_repo_id` writes
# the id it publishes to in its place and removes the line. Cards of m1data 0.x before it had REPO_ID_MARK.
REPO_ID_MARK = "<!-- m1data: repo id not known yet; m1data publish --repo-id writes it into the lines below -->"
NAMED_REPO_MARK = re.compile(r'<!-- m1data: the lines below load this dataset as "([^"\n]+)"; [^\n]*?-->\n?')


def repo_id_mark(name: str) -> str:
    """The line above a card's loading examples, naming what they load (`NAMED_REPO_MARK`). Why
    always, not only without a repo id: a card rendered for one repo and published to another
    kept the first one's id in its examples (publishing audit)."""
    return f'<!-- m1data: the lines below load this dataset as "{name}"; m1data publish writes its repo id in -->'

DATA_DIR = "data"
IMAGES_DIR = "images"
CARD_FILE = "README.md"
BUILD_KEY = "m1data_build"  # the card's record of which builder wrote a Hub folder

Configs = Mapping[str, Mapping[str, datasets.Dataset]]


# ---------------------------------------------------------------------------------------------
# The data part of the header


def data_metadata(configs: Configs, download_sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The header's ``configs:`` and ``dataset_info:`` for `configs` ({config: {split: Dataset}}),
    the first config the default; `download_sizes` ({config: bytes of its parquet files}) when
    the files are written."""
    return {"configs": configs_metadata(configs), "dataset_info": dataset_info_metadata(configs, download_sizes)}


# The Hub's `size_categories` values, each with the row count it starts above; a card with any
# other value (there is no "n>10M") is filed under no size.
_SIZE_BUCKETS = [(1_000, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                 (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                 (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]


def size_category(n: int) -> str:
    """The Hub's size bucket for `n` rows."""
    for limit, label in _SIZE_BUCKETS:
        if n < limit:
            return label
    return "n>1T"


def split_glob(config: str, split: str) -> str:
    """The data_files pattern of one split; split names cannot contain '-', so it cannot match
    another split's shards."""
    return f"{DATA_DIR}/{config}/{split}-*.parquet"


def configs_metadata(configs: Configs) -> list[dict[str, Any]]:
    """The card's ``configs:`` list: each config's splits mapped to its shards, first one default."""
    entries = []
    for position, (name, splits) in enumerate(configs.items()):
        entry: dict[str, Any] = {"config_name": name}
        if position == 0:
            entry["default"] = True
        entry["data_files"] = [{"split": split, "path": split_glob(name, split)} for split in splits]
        entries.append(entry)
    return entries


def dataset_info_metadata(
    configs: Configs, download_sizes: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """The card's ``dataset_info:`` list (features and num_examples per split, per config).

    Serialised by `datasets` itself, so the YAML is exactly what `load_dataset` reads back.
    """
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from huggingface_hub import DatasetCardData

    infos = DatasetInfosDict()
    for name, splits in configs.items():
        split_dict = SplitDict()
        features = None
        for split, ds in splits.items():
            split_dict.add(SplitInfo(name=split, num_bytes=rows_nbytes(ds), num_examples=len(ds)))
            features = features or ds.features
        infos[name] = DatasetInfo(
            features=features,
            splits=split_dict,
            dataset_size=sum(rows_nbytes(ds) for ds in splits.values()),
            download_size=None if download_sizes is None else download_sizes.get(name),
        )
    card_data = DatasetCardData()
    infos.to_dataset_card_data(card_data)
    return as_config_list(card_data.to_dict().get("dataset_info"))


def rows_nbytes(ds: datasets.Dataset) -> int:
    """Bytes of the Arrow data of the rows `ds` holds. Why not ``ds.data.nbytes``: a filtered or
    selected Dataset is an index into its whole table, and that counts the rows it hides (a card
    said ten times the size of a tenth of a table, and a split was cut into shards for them)."""
    if len(ds) == ds.data.num_rows:  # every row of the table (perhaps reordered): the same bytes
        return ds.data.nbytes
    return ds.flatten_indices(keep_in_memory=True).data.nbytes


def as_config_list(value: Any) -> list[dict[str, Any]]:
    """``dataset_info`` is a dict when a card has one config and a list otherwise; use a list."""
    if not value:
        return []
    if isinstance(value, dict):
        return [{"config_name": value.get("config_name", "default"), **value}]
    return [dict(v) for v in value]


# ---------------------------------------------------------------------------------------------
# Reading and writing the header


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """(YAML metadata, markdown body) of a card; a card without a header has empty metadata."""
    lines = text.lstrip("\n").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            metadata = yaml.safe_load("".join(lines[1:end])) or {}
            if not isinstance(metadata, dict):
                raise UserError("the card's YAML header is not a mapping")
            return metadata, "".join(lines[end + 1 :]).lstrip("\n")
    return {}, text


def hub_folder_dataset(folder: str | Path) -> str | None:
    """The builder (`m1k`, `m23k`, ...) whose export is in `folder`, or None when it holds none.
    Here, beside the card's other fields, so the readers can ask it without importing the export."""
    card = Path(folder) / CARD_FILE
    if not card.is_file():
        return None
    metadata, _ = split_card(card.read_text(encoding="utf-8"))
    if metadata.get(BUILD_KEY):
        return str(metadata[BUILD_KEY]).lower()
    pretty = metadata.get("pretty_name")  # folders written before BUILD_KEY: "m1K", "Random 1K" (a builder's name so)
    return str(pretty).lower().replace(" ", "-") if pretty else None


def join_card(metadata: Mapping[str, Any], body: str) -> str:
    header = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body.lstrip(chr(10))}"


def card_with_metadata(card: str, metadata: Mapping[str, Any]) -> str:
    """`card` with `metadata` keys set in its YAML header (a header is added if it has none)."""
    current, body = split_card(card)
    return join_card({**current, **metadata}, body)
