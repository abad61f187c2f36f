"""From a run directory to a Hub-layout folder: the last stage's rows, their configs, the card.

Why a module of its own: it is the one place that needs both the card renderer (m1data.cards)
and the folder writer (m1data.publishing.hub), so neither of those has to import the other. The card is
rendered without its data part (``configs:``/``dataset_info:``); `write_hub_folder` adds that
once, from the files it writes (`m1data.publishing.cardmeta.data_metadata`).

What reaches the folder is public: rows and card go through `m1data.redact.public_scrub` (URL
credentials out, local paths cut to their file name), the filter that also strips secrets, so
a path recorded on the build machine (a served model's GGUF path, a source file) is not
published; `m1data.publishing.hub.publish` refuses a folder in which one is left. The dataset's
own text (`CONTENT_COLUMNS`) loses URL credentials only: it is published as built (`public_rows`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from m1data.publishing.cardmeta import BUILD_KEY, IMAGES_DIR, hub_folder_dataset, join_card, split_card
from m1data.schema import flattened, rows_matching, strings_matching, with_table

__all__ = ["BUILD_KEY", "CONTENT_COLUMNS", "export_run", "hub_folder_dataset", "public_rows"]

log = logging.getLogger(__name__)


def export_run(
    dataset_name: str,
    run_dir: str | Path,
    folder: str | Path,
    *,
    config_name: str | None = None,
    split: str = "train",
    repo_id: str | None = None,
) -> Path:
    """The last stage's rows of `run_dir`, with its rendered card, in `folder`.

    The default config is named after the dataset (`m1k`, `m23k`, `random-1k`, ...) unless
    `config_name` says otherwise: configs of several builds share one repo, and two builds both
    named `default` would replace each other's data. It is train-ready for TRL; other views are
    configs beside it (`m1data.stages.formatting.hub_configs` says which and why)."""
    from m1data.cards import render_card
    from m1data.publishing.hub import write_hub_folder
    from m1data.running.pipeline import load_stage_rows, read_manifests, stage_dirname
    from m1data.stages.formatting import hub_configs

    config_name = config_name or dataset_name.lower()
    manifests = read_manifests(Path(run_dir))
    if not manifests:
        raise FileNotFoundError(f"{run_dir}: no completed stages (no */manifest.json)")
    last = manifests[-1]
    rows = load_stage_rows(Path(run_dir) / stage_dirname(last["index"], last["stage"]))
    configs = {name: {split: public_rows(view)} for name, view in hub_configs(rows, config_name).items()}
    card, images = render_card(dataset_name, Path(run_dir), configs, images_dir=IMAGES_DIR, repo_id=repo_id,
                               with_data_metadata=False)
    metadata, body = split_card(card)
    card = join_card({**metadata, BUILD_KEY: dataset_name.lower()}, body)
    return write_hub_folder(folder, configs, card, images)


REWRITE_SLICE = 16_384  # rows a rewritten column is put back together by: keeps each Arrow copy small
# The dataset's own text, in both configs (`m1data.stages.formatting.hub_configs`): published as built.
# "text" is `messages` rendered (`to_sft`): cut there alone, one row was published in two versions.
CONTENT_COLUMNS = frozenset({"question", "context", "options", "answer_letter", "answer_text", "prompt", "user_prompt",
                             "messages", "text", "completion", "reasoning", "teacher_reply", "teacher_answer"})


def public_rows(rows: datasets.Dataset) -> datasets.Dataset:
    """`rows` as they may be published: in every column where `public_scrub` changes some string
    (at any depth: a served model's path, a file named in a raw `metadata` row, a URL with
    `user:password@`), each string goes through it. Columns it would not change are left as they
    are, and so is the schema.

    `CONTENT_COLUMNS` (the question, options, answers, prompts, reasoning) lose a URL's credentials
    only (`m1data.redact.scrub`): a question that said "(/data)" or "~/x" was published rewritten,
    without a word. Text there that looks like a local path is kept and warned of, naming the
    column and its rows: `publish` refuses such a folder, so a real leak does not pass either.

    Which columns change is told from the Dataset's whole table (a selection's unselected rows
    too). Why by whole columns: per row (``map`` over Python values, the full pattern on every
    string) this took 70-100 s per 100K rows of traces, most of it Python's regex on texts that hold a
    ``\\boxed``; here Arrow finds in one pass the few strings that may hold a path or a URL's
    user (`m1data.redact.public_scrub_hints`), and only those rows go through Python."""
    from m1data.redact import public_scrub, public_scrub_hints, scrub

    _, scrub_hint = public_scrub_hints()
    scrubs = {c: scrub if c in CONTENT_COLUMNS else public_scrub for c in rows.column_names}
    affected = []
    for name in rows.column_names:
        flagged, changed = _scan(rows.data.column(name), scrub_hint, scrubs[name])
        if flagged and name in CONTENT_COLUMNS:
            log.warning(f"column {name!r}: {flagged} row(s) hold text that looks like a local path (or a URL's "
                        "credentials, which are removed); the dataset's own text is published as built, and "
                        "`m1data publish` refuses a local path: if it is this machine's, take it out of those rows")
        if changed:
            affected.append(name)
    if not affected:
        return rows
    log.info(f"local paths cut to file names and URL credentials removed in column(s) {', '.join(affected)} "
             "before publishing")
    table = flattened(rows).data.table
    for name in affected:
        at = table.column_names.index(name)
        table = table.set_column(at, table.schema.field(at), _scrubbed(table.column(at), scrub_hint, scrubs[name]))
    return with_table(rows, table)


def _scan(column: pa.ChunkedArray, hint: str, scrub: Callable[[Any], Any]) -> tuple[int, bool]:
    """How many rows of `column` hold a string (at any depth) that `public_scrub` changes, and
    whether `scrub` changes some string, both from one read of the strings that match `hint`: the
    dataset's own text was read twice, once for each. For `CONTENT_COLUMNS` the first is warned of
    (text kept as built) and the second says whether the column is rewritten (a URL's credentials)."""
    from m1data.redact import public_scrub

    flagged, changed = set(), False
    for number, chunk in enumerate(column.chunks):
        for row, text in strings_matching(chunk, hint):
            if public_scrub(text) != text:
                flagged.add((number, row))
                # what `scrub` changes `public_scrub` changes too (it removes a URL's credentials, then cuts)
                changed = changed or scrub is public_scrub or scrub(text) != text
    return len(flagged), changed


def _scrubbed(column: pa.ChunkedArray, hint: str, scrub: Callable[[Any], Any]) -> pa.ChunkedArray:
    """`column` with `scrub` applied to the values that hold a string matching `hint`; the
    others, which it would leave as they are, are kept as they are in Arrow."""
    pieces = []
    for chunk in column.chunks:
        for start in range(0, len(chunk), REWRITE_SLICE):
            part = chunk.slice(start, REWRITE_SLICE)
            hit = rows_matching(part, hint)
            if len(hit):
                new = pa.array([scrub(v) for v in part.take(pa.array(hit)).to_pylist()], type=part.type)
                order = np.arange(len(part))
                order[hit] = len(part) + np.arange(len(hit))
                pieces += pa.chunked_array([part, new]).take(pa.array(order)).chunks  # one copy, no concat first
            else:
                pieces.append(part)
    return pa.chunked_array(pieces, type=column.type)
