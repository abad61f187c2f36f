"""Subset samplers for building m1K-style sets out of a larger pool (reference section 8).

m1K is "domain -> dataset -> sample": the paper's point is that a uniform draw from m23K would be
~93% MedMCQA, so the sampler equalises the chance of each *group* instead of each row. This module
implements that hierarchical draw for any number of grouping columns, plus the uniform baseline the
paper ablates against ("Hard Random 1K").

Contract shared by both samplers:

* Deterministic for the same input Dataset (same rows in the same order) and the same seed. Group
  keys are visited in sorted order, so the *grouping* does not depend on the order in which groups
  first appear, but which row a bucket hands out does depend on the row order inside the bucket.
* No row is returned twice; the result is ``ds.select(indices)`` so every column is kept.
* Rows come back in the order they were drawn. Because the draw is sequential with one seeded
  generator, a sample of size ``n`` is a prefix of the sample of size ``m > n`` for the same seed.
* ``n >= len(ds)`` returns every row, still in drawn order (i.e. a seeded permutation), so callers
  never have to special-case "pool smaller than target"; ``n > len(ds)`` also warns
  (`PoolTooSmall`), because a "1K" set with fewer rows is usually a mistake upstream.
* The pool may be a `datasets.Dataset`, a pandas or polars DataFrame, or a list of row dicts; the
  sample comes back in the same type (pandas with the index of the drawn rows).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import polars as pl

from m1data.errors import UserError
from m1data.output import datasets_bars_off
from m1data.running.pipeline import RunContext, Stage, StageResult, check_rows, dropped_rows
from m1data.schema import as_dataset, flattened, fresh_fingerprint

__all__ = ["PoolTooSmall", "Sample", "SampleConfig", "random_sample", "stratified_sample"]

log = logging.getLogger(__name__)

_ROW = "__m1data_row__"

Leaf = tuple[tuple[Hashable, ...], np.ndarray]  # (key per level, row indices)


@dataclass
class _Bucket:
    """Rows of one leaf group; drawn from by swap-with-last so each draw is O(1)."""

    rows: np.ndarray
    remaining: int

    def take(self, rng: np.random.Generator) -> int:
        """Remove and return a uniformly chosen row without touching the other buckets."""
        pick = int(rng.integers(self.remaining))
        last = self.remaining - 1
        row = int(self.rows[pick])
        self.rows[pick] = self.rows[last]
        self.remaining = last
        return row


@dataclass
class _Group:
    """Non-empty children of one group, in sorted key order (sorted so seeds are reproducible)."""

    children: list[_Group | _Bucket] = field(default_factory=list)


class PoolTooSmall(UserWarning):
    """Asked for more rows than the pool has; every row is returned."""


def _check_size(n: int, name: str = "n") -> None:
    """A sample size is a non-negative int. Why: 10.7 or True would otherwise crash deep inside
    numpy, or ran (a config's n=True drew 1 row; n=10.7 logged "asked for 10.7 rows")."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}: {n!r}")
    if n < 0:
        raise UserError(f"{name} must be >= 0, got {n}")


def _check_n(n: int, pool: int) -> None:
    """Reject a size that is not one (`_check_size`); warn when the pool is short."""
    _check_size(n)
    if n > pool:
        warnings.warn(f"asked for {n:,} rows but the pool has {pool:,}: returning all {pool:,}", PoolTooSmall,
                      stacklevel=3)


def _check_seed(seed: int) -> None:
    """A seed is a non-negative int. Why: None drew a different sample on every call (numpy's
    fresh entropy), against the contract above, and -1 was numpy's "expected non-negative
    integer", which named no seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (the paper's is 42), got {type(seed).__name__}: {seed!r}")
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")


def _as_dataset(data: Any) -> tuple[datasets.Dataset, Callable[[datasets.Dataset, np.ndarray], Any]]:
    """The pool as a Dataset (`m1data.schema.as_dataset`), and how to turn (sample, drawn
    indices) back into the caller's type."""
    ds = as_dataset(data, "the pool")
    if data is ds:
        return ds, lambda sample, _: sample
    if isinstance(data, pl.DataFrame):
        return ds, lambda _, idx: data[idx.tolist()] if len(idx) else data.clear()
    if isinstance(data, list):
        return ds, lambda _, idx: [data[i] for i in idx.tolist()]
    return ds, lambda _, idx: data.iloc[idx]  # pandas


def _level_names(levels: Sequence[str], name: str = "levels") -> tuple[str, ...]:
    """The rules on level columns that hold before any data is seen, so a config can be checked
    when it is read (`SampleConfig`) by the same rules the sampler applies when it runs. An order
    is required because the first column is the outermost level: a set has none."""
    if isinstance(levels, str):
        raise TypeError(f"{name} must be a sequence of column names, not a single string")
    if isinstance(levels, (set, frozenset, dict)) or not hasattr(levels, "__iter__"):
        raise TypeError(f"{name} must be a sequence of column names (outermost level first), "
                        f"got {type(levels).__name__}")
    levels = list(levels)  # a numpy array or a pandas Index of names too
    for column in levels:
        if not isinstance(column, str):
            raise TypeError(f"{name} must hold column names, got {type(column).__name__}: {column!r}")
        if not column.strip():
            raise UserError(f"{name} holds an empty column name: {list(levels)}")
    if len(set(levels)) != len(levels):
        raise UserError(f"{name} contains a column twice: {list(levels)}")
    return tuple(levels)


def _check_levels(ds: datasets.Dataset, levels: Sequence[str]) -> list[str]:
    """Fail early with the offending column name instead of a polars error about a missing key."""
    names = list(_level_names(levels))
    if not names:
        raise UserError("levels must name at least one column; use random_sample for no strata")
    for name in names:
        if name not in ds.column_names:
            raise UserError(
                f"level column {name!r} is not in the dataset (columns: {ds.column_names})"
            )
        feature = ds.features[name]
        if not isinstance(feature, (datasets.Value, datasets.ClassLabel)):  # polars said "unhashable type"
            raise UserError(f"level column {name!r} holds {feature}, not one value a row; group on a column of "
                            "texts or numbers")
    return names


def _leaf_rows(ds: datasets.Dataset, levels: list[str]) -> list[Leaf]:
    """Group row indices by the level columns in one vectorised pass (no per-row Python work).

    Returns one entry per leaf in sorted key order (missing values last, as None), rows ascending
    inside each leaf.
    """
    frame = _missing_as_null(ds.select_columns(levels).to_polars(), levels).with_row_index(_ROW)
    _warn_missing(frame, levels)
    _warn_variants(frame, levels)
    grouped = (
        frame.group_by(levels)
        .agg(pl.col(_ROW))
        .sort(levels, nulls_last=True)
    )
    leaves = []
    for record in grouped.iter_rows():
        key = tuple(record[:-1])
        rows = np.sort(np.asarray(record[-1], dtype=np.int64))
        leaves.append((key, rows))
    return leaves


def _missing_as_null(frame: pl.DataFrame, levels: list[str]) -> pl.DataFrame:
    """NaN and empty or blank strings as null: one missing value, whatever the input type. Why: a
    pandas pool came in with NaN already null, a polars one kept both, so the same rows gave two
    groups or three; and "" was a domain of its own, drawn as often as a real one."""
    fixes = []
    for name in levels:
        dtype = frame.schema[name]
        if dtype.is_float():
            fixes.append(pl.col(name).fill_nan(None))
        elif dtype == pl.String:
            fixes.append(pl.when(pl.col(name).str.strip_chars() == "").then(None).otherwise(pl.col(name)).alias(name))
    return frame.with_columns(fixes) if fixes else frame


def _warn_missing(frame: pl.DataFrame, levels: list[str]) -> None:
    """Say once per draw how many rows have no value at which level. They are drawn, not
    dropped (every row is accounted for), but as one group as likely as any real value, which is
    rarely meant: for m1K that is untagged rows taking a domain's share (see m1data.stages.mesh)."""
    counts = frame.select(pl.col(levels).null_count()).row(0)
    missing = [f"{count:,} of {frame.height:,} at {name!r}" for name, count in zip(levels, counts, strict=True)
               if count]
    if missing:
        log.warning(f"rows with no value (null, NaN or blank) at a level: {', '.join(missing)}; they are drawn as "
                    "one group of their own at that level, as likely as a real value: tag them, or filter them "
                    "out first")


def _warn_variants(frame: pl.DataFrame, levels: list[str]) -> None:
    """Say when a level's texts differ only in case or spacing ("Diagnosis", "diagnosis ").
    They are drawn as groups of their own, each as likely as a real value: a pool that names its
    domains or sources by hand gives one domain two or three times its share, without a word."""
    for name in levels:
        if frame.schema[name] != pl.String:
            continue
        values = frame.get_column(name).drop_nulls().unique().to_list()
        spellings: dict[str, list[str]] = {}
        for value in values:
            spellings.setdefault(" ".join(value.casefold().split()), []).append(value)
        variants = sorted(sorted(group) for group in spellings.values() if len(group) > 1)
        if variants:
            shown = "; ".join(", ".join(repr(v) for v in group) for group in variants[:5])
            log.warning(f"{name!r}: {len(variants):,} value(s) written more than one way ({shown}); each spelling is "
                        "drawn as a group of its own: write each value one way first")


def _build_tree(leaves: list[Leaf]) -> _Group:
    """Nest the sorted leaves into groups; sorted input keeps every child list in key order."""
    root = _Group()
    index: dict[tuple[Hashable, ...], _Group] = {(): root}
    for key, rows in leaves:
        parent = root
        for depth in range(1, len(key)):
            prefix = key[:depth]
            if prefix not in index:
                index[prefix] = _Group()
                parent.children.append(index[prefix])
            parent = index[prefix]
        parent.children.append(_Bucket(rows=rows, remaining=len(rows)))
    return root


def _draw(root: _Group, rng: np.random.Generator) -> int:
    """One step of the procedure: uniform child at every level, then a row; prune what emptied."""
    path: list[tuple[_Group, int]] = []
    node: _Group | _Bucket = root
    while isinstance(node, _Group):
        pick = int(rng.integers(len(node.children)))
        path.append((node, pick))
        node = node.children[pick]
    row = node.take(rng)
    if node.remaining == 0:
        _prune(path)
    return row


def _prune(path: list[tuple[_Group, int]]) -> None:
    """Drop the emptied bucket and every parent it leaves empty, so later draws stay uniform
    over groups that can still give a row."""
    for group, pick in reversed(path):
        del group.children[pick]
        if group.children:
            return


def stratified_sample(
    ds: Any,
    n: int,
    levels: Sequence[str] = ("domain", "source"),
    seed: int = 42,
) -> Any:
    """Draw ``n`` rows so that groups, not rows, are equally likely at every level.

    The m1K procedure: pick a ``levels[0]`` group uniformly among non-empty ones, then a
    ``levels[1]`` sub-group uniformly inside it, and so on, then a row uniformly from that leaf,
    without replacement. Emptied buckets and parents are dropped, so a small group simply stops
    being drawn once exhausted (this is why PubMedQA's 28 rows nearly all land in m1K).
    ``levels=("domain",)`` gives the paper's "Hard Domain Balanced" ablation.

    A row with no value at a level (null, NaN, or an empty or blank string: one missing value for
    every input type) is drawn from one group of its own at that level, sorted after every other
    key, and so is as likely as a real value. Such rows are kept, not dropped, but a warning is
    logged with how many there are at which level, since that group is rarely meant (untagged rows
    would take a domain's share of m1K): tag them, or filter them out first. See the module
    docstring for determinism, ordering, input types and the ``n >= len(ds)`` case.
    """
    ds, back = _as_dataset(ds)
    _check_n(n, len(ds))
    _check_seed(seed)
    if not len(ds) and not ds.column_names:  # an empty list: no rows, and no columns to check
        return back(ds, np.zeros(0, dtype=np.int64))
    chosen = _stratified_rows(ds, n, levels, seed)
    return back(ds.select(chosen, new_fingerprint=fresh_fingerprint()), chosen)


def _stratified_rows(ds: datasets.Dataset, n: int, levels: Sequence[str], seed: int) -> np.ndarray:
    """The positions `stratified_sample` draws, in drawn order."""
    names = _check_levels(ds, levels)
    rng = np.random.Generator(np.random.PCG64(seed))
    target = min(int(n), len(ds))
    if target == 0:
        return np.zeros(0, dtype=np.int64)
    root = _build_tree(_leaf_rows(ds, names))
    return np.fromiter((_draw(root, rng) for _ in range(target)), dtype=np.int64, count=target)


def random_sample(ds: Any, n: int, seed: int = 42) -> Any:
    """Uniform draw without replacement: the baseline ("Random 1K", "Hard Random 1K") that shows
    what the stratified sampler buys. Same ordering, input types and ``n >= len(ds)`` contract."""
    ds, back = _as_dataset(ds)
    _check_n(n, len(ds))
    _check_seed(seed)
    order = _random_rows(ds, n, seed)
    return back(ds.select(order, new_fingerprint=fresh_fingerprint()), order)


def _random_rows(ds: datasets.Dataset, n: int, seed: int) -> np.ndarray:
    """The positions `random_sample` draws, in drawn order."""
    return np.random.Generator(np.random.PCG64(seed)).permutation(len(ds))[: int(n)]


@dataclass
class SampleConfig:
    """`levels` empty means a uniform draw (the "Random" ablations)."""

    n: int = 1000
    levels: tuple[str, ...] = ("domain", "source")
    seed: int = 42

    def __post_init__(self) -> None:
        """Checked when the config is read, not when the sampler runs after every other stage.
        Whether the level columns exist is checked when a build starts, where the stages before
        say which columns they give (`check_columns`), else by the sampler."""
        _check_size(self.n, "sample.n")
        self.levels = _level_names(self.levels, "sample.levels")
        _check_seed(self.seed)


class Sample(Stage):
    """A sampler as a pipeline stage; rows not drawn are recorded as `not_sampled`. With fewer
    rows than asked for it takes them all, says so, and records `short_by` in the manifest.
    Its accounting is the default one (`Stage.account`): drawn + not drawn = the pool, id by id,
    because every row not drawn is written as a dropped row. Rows are told apart by position, not
    id: two rows of one id (rows a researcher brings) were both taken for drawn when one was."""

    name = "sample"

    def __init__(self, config: SampleConfig, name: str = "sample"):
        self.config = config
        self.name = name

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return before  # a selection of its rows

    def columns_needed(self) -> tuple[str, ...]:
        return self.config.levels

    @datasets_bars_off()  # filter and flatten_indices show datasets' bars; a stage run prints nothing
    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult:
        rows = check_rows(rows, self.name, ("id", "source"))  # None: it ran first; a frame: not a Dataset
        cfg = self.config
        if cfg.levels:
            chosen = _stratified_rows(rows, cfg.n, cfg.levels, cfg.seed)
        else:
            chosen = _random_rows(rows, cfg.n, cfg.seed)
        kept = rows.select(chosen, new_fingerprint=fresh_fingerprint())
        drawn = np.zeros(len(rows), dtype=bool)
        drawn[chosen] = True
        left = rows.select(np.flatnonzero(~drawn), new_fingerprint=fresh_fingerprint())
        dropped = dropped_rows(left.select_columns(["id", "source"]), "not_sampled")
        stats = {"n_requested": cfg.n, "n_drawn": len(kept), "short_by": cfg.n - len(kept)}
        if len(kept) < cfg.n:
            log.warning(f"{self.name}: asked for {cfg.n:,} rows but only {len(rows):,} reached this stage; "
                        f"took all {len(kept):,}")
        return StageResult(rows=flattened(kept), dropped=dropped, stats=stats)
