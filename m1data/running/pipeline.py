"""The stage runner: an ordered list of stages, each Dataset in and Dataset out, with a ledger.

Every stage writes its output under the run directory as `NN_name/rows.parquet`, the rows it
removed (with reasons) as `dropped.parquet`, and a `manifest.json` with its config, the
fingerprint of its input, per-source counts in and out, drop reasons with counts, wall time and
any stage statistics (tokens, cost, per-eval-set counts). The manifest is written last, after
the parquet files are in place, so a crash mid-stage leaves no manifest and earlier stages stay
intact. A re-run skips every stage whose manifest matches its config and input fingerprint.

What a stage paid for (an LLM reply cache) lives in its state folder `cache/NN_name/`, beside the
stage folders and never inside them: rewriting a stage swaps its folder (`NN_name.tmp` is
written, then renamed into place), and no moment of that swap may hold the only copy of a paid
reply. Before a stage runs, whatever a crash left behind is put back in order: state found in a
stage folder (run folders from before this layout) or in its `.tmp`/`.old` leftovers is merged
into the state folder first, a `.tmp` holding a complete stage finishes its swap, and only then
are the leftovers deleted.

The funnel (paper Table 3) and the lineage of any row are read back from these manifests, those
of the stages of the last build run in the folder (`builds.json`; m23K and m1K may share one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from m1data import __version__
from m1data.durable import fsync_folder, fsync_tree, write_atomic
from m1data.errors import M1DataError, UserError, storage_errors
from m1data.output import datasets_bars_off
from m1data.redact import scrub, strip_userinfo
from m1data.schema import column_array, column_values, flattened, fresh_fingerprint

log = logging.getLogger(__name__)

DROP_COLUMNS = ("id", "source", "reason")
SUPERSEDED = "superseded"  # a dropped-table column: this row is a record of a try, not a lost row
OUTPUT_FILES = ("rows.parquet", "dropped.parquet", "manifest.json")
STATE_DIR = "cache"
BUILD_FILE = "builds.json"  # the stage folders of each build run in the folder (_record_build)
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


@dataclass
class StageResult:
    """What a stage hands back: the kept rows, the removed rows (with at least id, source,
    reason columns; any extra columns are kept in dropped.parquet) and statistics for the
    manifest."""

    rows: datasets.Dataset
    dropped: datasets.Dataset | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    transient_failures: int = 0
    """Requests that failed for a reason that may pass (timeout, 5xx, dropped connection) after
    every retry. Their rows are not a result: the stage is written (for inspection) but marked
    incomplete, the run stops after it, and the next run re-runs it, sending exactly those."""


@datasets_bars_off()  # a stage's helpers print nothing, whoever calls the stage (README)
def in_memory(rows: datasets.Dataset) -> datasets.Dataset:
    """`rows` as one plain in-memory Arrow table, which survives pickling. Why: a selection of zero
    rows from a table that had columns added is held by `datasets` as a concatenation of no blocks;
    it writes to parquet, but unpickling it fails (`ArrowInvalid: Must pass at least one table`),
    and a distributed worker hands its results back pickled."""
    from datasets.table import InMemoryTable

    rows = flattened(rows)
    return datasets.Dataset(InMemoryTable(rows.data.table), info=rows.info.copy(), split=rows.split,
                            fingerprint=fresh_fingerprint())


def portable(result: StageResult) -> StageResult:
    """A StageResult whose rows and dropped rows survive pickling (see `in_memory`)."""
    dropped = None if result.dropped is None else in_memory(result.dropped)
    return dataclasses.replace(result, rows=in_memory(result.rows), dropped=dropped)


@dataclass
class RunContext:
    """Where a stage's outputs go (`stage_dir`) and where it keeps state that must survive a
    crash and every rewrite of its outputs (`state_dir`, an LLM reply cache, say). Outside a
    pipeline (a file run) both may be the same folder."""

    run_dir: Path
    stage_dir: Path
    state_dir: Path = None  # type: ignore[assignment]  # None: the stage folder
    executor: Any = None  # None: run here; else an m1data.running.distributed.RayExecutor

    def __post_init__(self) -> None:
        if self.state_dir is None:
            self.state_dir = self.stage_dir


class Stage(ABC):
    """One step of a pipeline. Subclasses set `name`, hold a dataclass `config`, and implement
    `run`. The first stage of a pipeline receives `rows=None`. `row_parallel`: each row's output
    depends on that row alone, so a distributed executor may run the stage block by block."""

    name: ClassVar[str]
    config: Any
    row_parallel: ClassVar[bool] = False
    reads_rows: ClassVar[bool] = False
    """True for a stage whose rows come from elsewhere (files, an existing dataset), not from the
    stage before it: it comes first, and `account` checks it in a reader's terms. Declared, not
    inferred, so a stage that makes rows out of nothing says so."""

    def account(self, rows: datasets.Dataset | None, result: StageResult) -> None:
        """Refuse (StageFailed) a result that does not account for the stage's input, before it
        is recorded: nothing is dropped silently. By default every input row is kept or dropped
        with a reason, exactly once (`account_kept_or_dropped`); a reader's rows are checked by
        `account_read`. A stage that changes the row count by design (draws, splits, adds rows)
        overrides this with the check of its own terms. Why here: a bug in a stage, or in a
        researcher's own Stage subclass, would otherwise lose rows with no trace."""
        if self.reads_rows:
            account_read(self.name, rows, result)
        else:
            account_kept_or_dropped(self.name, rows, result)

    def holds_model(self) -> bool:
        """True when the stage loads a model into its own process (vLLM, transformers), so a
        distributed worker must keep it for the whole stage and free it after."""
        return False

    @abstractmethod
    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult: ...

    def preflight(self) -> str | None:
        """None when the stage can run now; otherwise what it is missing (a model endpoint, a
        key). Checked only for stages that are about to run, not for those skipped."""
        return None

    def missing(self) -> str | None:
        """None when what this stage needs is installed; otherwise what is not, with the command
        that installs it. Checked before a run's first stage for every stage it may reach that has
        not completed, so a missing extra stops a build at once, not after hours of model calls
        (a pip install without the tagger extra stopped at the tag stage, the build's eighth)."""
        return None

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        """The columns this stage's rows will have, given those of the rows it gets (None:
        not known before it runs, as for rows a user brings, or a stage that does not say).
        With `columns_needed`, what `check_columns` reads to stop a build whose sampler names a
        column no stage gives before anything runs, not after hours of model calls."""
        return None

    def columns_needed(self) -> tuple[str, ...]:
        """Columns beyond the row schema that this stage's config names and its rows must have."""
        return ()

    def external_fingerprint(self) -> str:
        """Fingerprint of inputs that are not the previous stage's rows (files a loader reads)."""
        return ""

    def shared_caches(self) -> tuple[str, ...]:
        """Reply caches outside the run folder that this stage's config names (an LLM stage's
        `cache_path`): another build may name them too, so a build holds them while it runs
        (`cache_lock`), or both sent, and paid for, the same requests."""
        return ()

    def config_dict(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self.config):
            return json.loads(json.dumps(dataclasses.asdict(self.config), default=str))
        return {}

    def merge_stats(self, parts: list[dict[str, Any]], rows: datasets.Dataset) -> dict[str, Any]:
        """The statistics of a row-parallel stage run block by block (a distributed executor), as
        one: `parts` are the blocks' `StageResult.stats` in order, `rows` all kept rows. The
        default sums counts (`sum_stats`); a stage whose statistics do not add
        up (a mean, a percentile, a sample) overrides this. Part of the contract, not an optional
        hook, so a stage cannot be merged by a rule it never declared."""
        return sum_stats(parts)

    def merge_results(self, parts: Sequence[StageResult]) -> StageResult:
        """The blocks' results as the one result the stage would have given on all rows at once:
        kept and dropped rows concatenated in block order, statistics merged by `merge_stats`, and
        the transient failures summed, so one incomplete block leaves the whole stage incomplete."""
        rows = datasets.concatenate_datasets([p.rows for p in parts])
        drops = [p.dropped for p in parts if p.dropped is not None]
        dropped = None
        if drops:
            non_empty = [d for d in drops if len(d)]
            dropped = datasets.concatenate_datasets(non_empty) if non_empty else drops[0]
        return StageResult(rows=rows, dropped=dropped, stats=self.merge_stats([p.stats for p in parts], rows),
                           transient_failures=sum(p.transient_failures for p in parts))


# ---------------------------------------------------------------------------------------------
# Manifests


def _fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def input_digest(path: str | Path) -> str:
    """What a stage's input at `path` holds, for its fingerprint: a file's digest; a folder's
    (a source's files, a Hub-layout folder) over every file in it, names and contents, so an
    edited file makes the stage run again (hidden ones left out: a clone's .git is no data);
    anything else (a Hub repo id) its name, as given."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        return str(path)
    digest = hashlib.sha256()
    files = (p for p in path.rglob("*") if p.is_file())
    for file in sorted(f for f in files if not any(part.startswith(".") for part in f.relative_to(path).parts)):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\0".encode())
    return digest.hexdigest()[:16]


@datasets_bars_off()
def add_columns(rows: datasets.Dataset, columns: dict[str, tuple[Sequence[Any], Any]]) -> datasets.Dataset:
    """Append columns given as {name: (values, feature)}; explicit features keep empty inputs and
    all-null columns well typed. An existing column of the same name is replaced."""
    rows = rows.remove_columns([name for name in columns if name in rows.column_names])
    if len(rows) == 0:  # datasets cannot add a column to an empty table it has concatenated before
        features = datasets.Features({**rows.features, **{name: feature for name, (_, feature) in columns.items()}})
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    for name, (values, feature) in columns.items():
        rows = rows.add_column(name, list(values), feature=feature, new_fingerprint=fresh_fingerprint())
    return rows


def check_rows(rows: Any, stage: str, required: Sequence[str] = (), texts: Sequence[str] = ()) -> datasets.Dataset:
    """A stage's input, checked before its work: rows there, a Dataset (a pandas or polars frame
    failed deep inside with "no attribute 'remove_columns'"), with the columns the stage reads,
    and a str in every row of the `texts` columns it reads as text (`check_texts`)."""
    if rows is None:
        raise UserError(f"the {stage} stage needs input rows; it cannot be the first stage")
    if not isinstance(rows, datasets.Dataset):
        raise TypeError(f"the {stage} stage takes a datasets.Dataset, got {type(rows).__name__} "
                        "(Dataset.from_pandas(frame, preserve_index=False), Dataset.from_polars(frame) "
                        "or Dataset.from_list(rows))")
    missing = [c for c in required if c not in rows.column_names]
    if missing:
        raise UserError(f"the {stage} stage needs columns {missing} (see m1data.schema); "
                        f"the rows have {rows.column_names}")
    for column in texts:
        check_texts(rows, column, f"the {stage} stage")
    return rows


def check_texts(rows: datasets.Dataset, column: str, what: str, id_column: str = "id") -> None:
    """Every value of `column` is a str, or the first row that is not is named by its id. Why: a
    None (a pandas NaN, a null in a file) failed deep inside the reader of the text (the offline
    tagger's "Unsupported input type: NoneType"), or worse, was formatted as the text "None" and
    sent to an LLM or compared as such."""
    if column not in rows.column_names or not len(rows):
        return
    values = column_array(rows, column)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        if not values.null_count:
            return
        bad = int(np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False))[0])
        value = None
    else:  # not text at all (numbers, lists), every value null, or types mixed (`column_values` decodes them)
        bad, value = next(((i, v) for i, v in enumerate(column_values(rows, column)) if not isinstance(v, str)),
                          (-1, None))
        if bad < 0:
            return
    raise UserError(f"{what}: row {row_name(rows, bad, id_column)}: its {column!r} is {type(value).__name__}, not str; "
                    "fill it in or remove the row")


def row_name(rows: datasets.Dataset, index: int, id_column: str = "id") -> str:
    """How an error names a row: its id, else its position."""
    if id_column in rows.column_names:
        return repr(rows[index][id_column])
    return f"{index} (the rows have no {id_column!r})"


@datasets_bars_off()  # its flatten_indices showed datasets' bar from a stage run in a notebook
def dropped_rows(
    rows: datasets.Dataset, reasons: str | Sequence[str], columns: dict[str, tuple[Sequence[Any], Any]] | None = None
) -> datasets.Dataset:
    """Every stage's table of rows not kept: `rows` (those rows, with whichever of their columns
    the stage shows; `id` and `source` at least), a `reason` for each (one for all, or one per
    row), then the stage's own `columns` {name: (values, feature)}, e.g. `detail`, `match_id`.
    The funnel and lineage read `id`, `source` and `reason`; the rest is for a reader."""
    missing = [c for c in ("id", "source") if c not in rows.column_names]
    if missing:
        raise UserError(f"dropped rows need columns {missing}")
    rows = flattened(rows)  # add_column needs a plain table
    reasons = [reasons] * len(rows) if isinstance(reasons, str) else list(reasons)
    return add_columns(rows, {"reason": (reasons, datasets.Value("string")), **(columns or {})})


def dropped_path(out_path: str | Path) -> Path:
    """Where a file command puts the rows it did not keep: `OUT.parquet` -> `OUT.dropped.parquet`."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.dropped{out_path.suffix}")


def stats_path(out_path: str | Path) -> Path:
    """Where a file command puts its statistics: `OUT.parquet` -> `OUT.stats.json`. Why a file:
    some statistics are lists a row long (the rows only the n-gram check flags: 1,880 of 1M
    benchmark rows), too long for a terminal, which shows their head (`m1data.cli`)."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.stats.json")


def write_result(rows: datasets.Dataset, dropped: datasets.Dataset | None, out_path: str | Path) -> Path:
    """What every file command writes: the kept rows to OUT, the rows not kept (empty, if none)
    to OUT.dropped.<ext> beside it, as a pair: both or, after a kill mid-write, neither (OUT is
    renamed into place last; `readers.write_together`). Returns the dropped file's path."""
    from m1data.reading.readers import write_together

    empty = rows.select([], new_fingerprint=fresh_fingerprint())
    return write_together([(rows, out_path), (dropped if dropped is not None else empty, dropped_path(out_path))])[1]


def refuse_overwrite(inputs: str | Path | Sequence[str | Path | None], out_path: str | Path) -> None:
    """Stop, before anything runs, a file command whose OUT (or OUT.dropped.<ext>) is one of its
    inputs, or lies in a folder given as input: the input would be overwritten (`dedup X X`
    turned 10 rows into 9), or the next run would read the output as input."""
    given = [inputs] if isinstance(inputs, (str, Path)) else [p for p in inputs if p is not None]
    out_path = Path(out_path).expanduser()
    for written in (out_path, dropped_path(out_path), stats_path(out_path)):
        target = written.resolve()
        for path in (Path(p).expanduser() for p in given):
            source = path.resolve()
            if target == source:
                raise UserError(f"{written} is also an input; writing it would overwrite that input: choose another OUT")
            if path.is_dir() and target.parent == source:
                raise UserError(f"{written} lies inside the input folder {path}, whose files are all read as input: "
                                "choose an OUT outside it")


@datasets_bars_off()
def run_on_file(
    stage: Stage,
    in_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    ctx: RunContext | None = None,
) -> dict[str, Any]:
    """One stage over files, outside a build: IN rows (a file, several, or a folder of them; see
    `read_rows`) -> OUT and OUT.dropped.<ext>. Returns rows in, out and dropped, and the stage's
    statistics, also written to OUT.stats.json. Zero rows in is not an error: both row files are
    written empty. `~` in OUT is the home folder, as in IN (`read_rows`). One run at a time per
    OUT (`output_lock`): every door (the commands, `m1data.jobs`, Ray) comes through here."""
    out_path = Path(out_path).expanduser()
    refuse_overwrite(in_path, out_path)
    with output_lock(out_path):
        return _run_on_file(stage, in_path, out_path, ctx)


def _run_on_file(stage: Stage, in_path: str | Path | Sequence[str | Path], out_path: Path,
                 ctx: RunContext | None) -> dict[str, Any]:
    from m1data.reading.readers import read_rows

    rows = read_rows(in_path)
    if len(rows) == 0:
        log.warning("%s: 0 rows, nothing to do; %s and its dropped file are written empty", _names(in_path), out_path)
        return _write_file_outputs(rows, None, {"rows_in": 0, "rows_out": 0, "rows_dropped": 0}, out_path)
    problem = stage.preflight()  # as a build checks a stage: a dead endpoint is one line, not a run of retries
    if problem is not None:
        raise UserError(problem)
    result = stage.run(rows, ctx)
    _check_dropped(stage, result.dropped)
    check_accounting(stage, rows, result)
    dropped = lost_rows(result.dropped)[1]  # not a question's tries its kept try superseded: in = out + dropped
    stats = {"rows_in": len(rows), "rows_out": len(result.rows), "rows_dropped": dropped,
             "transient_failures": result.transient_failures, **scrub(result.stats)}
    _write_file_outputs(result.rows, result.dropped, stats, out_path)
    log.info("%s: %s rows -> %s kept in %s, %s dropped (%s)", stage.name, f"{len(rows):,}", f"{len(result.rows):,}",
             out_path, f"{dropped:,}", dropped_path(out_path))
    return stats


def _write_file_outputs(rows: datasets.Dataset, dropped: datasets.Dataset | None, stats: dict[str, Any],
                        out_path: str | Path) -> dict[str, Any]:
    """OUT and its dropped file (`write_result`), then `stats` in OUT.stats.json. The last run's
    statistics are removed first, so a kill or a failed write in between leaves none, never
    another run's beside these rows."""
    stats_path(out_path).unlink(missing_ok=True)
    write_result(rows, dropped, out_path)
    write_atomic(stats_path(out_path), json.dumps(stats, indent=2, default=str) + "\n")
    return stats


def _names(in_path: str | Path | Sequence[str | Path]) -> str:
    return str(in_path) if isinstance(in_path, (str, Path)) else ", ".join(map(str, in_path))


def source_counts(ds: datasets.Dataset | None) -> dict[str, int]:
    if ds is None or len(ds) == 0 or "source" not in ds.column_names:
        return {}
    return dict(sorted(Counter(column_values(ds, "source")).items()))


def drop_counts(dropped: datasets.Dataset | None) -> dict[str, dict[str, int]]:
    """{reason: {source: count}}, of rows the stage lost: a row marked `superseded` (a rejected
    try of a question that was kept, or tried again) is a record, not a lost row."""
    if dropped is None or len(dropped) == 0:
        return {}
    table: dict[str, Counter[str]] = {}
    superseded = column_values(dropped, SUPERSEDED) if SUPERSEDED in dropped.column_names else [False] * len(dropped)
    for reason, source, past in zip(column_values(dropped, "reason"), column_values(dropped, "source"), superseded,
                                    strict=True):
        if past:
            continue
        table.setdefault(reason, Counter())[source] += 1
    return {reason: dict(sorted(counts.items())) for reason, counts in sorted(table.items())}


def stage_dirname(index: int, name: str) -> str:
    return f"{index:02d}_{name}"


def state_dir_of(run_dir: Path, index: int, name: str) -> Path:
    """A stage's state folder: `RUN_DIR/cache/NN_name/`, beside the stage folders."""
    return Path(run_dir) / STATE_DIR / stage_dirname(index, name)


# What every manifest has held since the first version, and what the build, funnel, lineage,
# export and card read from it without a default: valid JSON without one of them (`{}`, an edit)
# is as damaged as a manifest cut short, and failed later with a KeyError traceback.
MANIFEST_KEYS = ("stage", "index", "config", "input_fingerprint", "output_fingerprint", "counts_in", "counts_out",
                 "rows_in", "rows_out", "drops", "stats")


class CorruptRunFile(M1DataError, ValueError):
    """A file of a run folder that is not what the run wrote (unreadable, or changed since)."""


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptRunFile(
            f"{path} is not valid JSON ({err}); delete the folder {stage_dir} to run that stage again"
        ) from None
    if not isinstance(manifest, dict):
        raise CorruptRunFile(f"{path} is not a stage manifest (a JSON object); delete {stage_dir} to run it again")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise CorruptRunFile(f"{path} is not a stage manifest: it has no {', '.join(map(repr, missing))}; "
                             f"delete {stage_dir} to run it again")
    return manifest


def _record_build(run_dir: Path, stages: Sequence[Stage]) -> None:
    """Add the stage folders of the build now running to BUILD_FILE (most recent last). Why: m23K,
    m1K and a re-sampled m1K may share a run folder, so it can hold several builds' stages (m1K's
    sample beside m23K's format); the export, card, funnel and lineage must read one build's."""
    build = [stage_dirname(i, s.name) for i, s in enumerate(stages)]
    builds = [b for b in _readable_builds(run_dir) if b != build] + [build]
    with storage_errors(run_dir / BUILD_FILE):
        write_atomic(run_dir / BUILD_FILE, json.dumps({"builds": builds}, indent=1) + "\n")


def _readable_builds(run_dir: Path) -> list[list[str]]:
    """The builds recorded so far, for a build about to add itself. An unreadable record (cut
    short, edited) is moved aside, named in a warning, and a new one is started: the error that
    `read_manifests` gives for it tells the user to run the build again, which must then work."""
    try:
        return _recorded_builds(run_dir) or []
    except CorruptRunFile:
        aside = run_dir / f"{BUILD_FILE}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
        (run_dir / BUILD_FILE).replace(aside)
        log.warning(f"{run_dir / BUILD_FILE} is not a build record: moved to {aside.name}, and a new record starts "
                    "with this build (the funnel, lineage and export read this build's stages)")
        return []


def _recorded_builds(run_dir: Path) -> list[list[str]] | None:
    """The stage folder names of each build run in `run_dir`, most recent last; None for a folder
    written before BUILD_FILE existed."""
    path = run_dir / BUILD_FILE
    if not path.is_file():
        return None
    try:
        builds = json.loads(path.read_text(encoding="utf-8"))["builds"]
        return [[str(name) for name in build] for build in builds]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CorruptRunFile(f"{path} is not a build record ({type(err).__name__}: {err}); "
                             "delete it, or run the build again to rewrite it") from None


def read_manifests(run_dir: Path, upto: str | None = None) -> list[dict[str, Any]]:
    """The completed stage manifests of the last build run in `run_dir`, in pipeline order
    (stages another build left in the folder are not part of it); in a folder written before
    builds were recorded, of every stage folder. They end where the build's chain does: at a stage
    it never wrote, or one written from another output of the stage before it (left by an earlier
    build, when this one stopped sooner: `until`, a stage not ready or incomplete).

    `upto` (a stage folder's name, `07_format`): the stages up to that one, of the most recent
    build that has it (the m23K stage a re-sampled m1K was drawn from)."""
    run_dir = Path(run_dir)
    builds = _recorded_builds(run_dir)
    builds_recorded = builds is not None
    if builds is None:
        builds = [sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.suffix not in (".tmp", ".old"))]
    names = builds[-1]
    if upto is not None:
        names = next((b for b in reversed(builds) if upto in b), [n for n in names if n <= upto])
        names = names[: names.index(upto) + 1] if upto in names else names
    manifests: list[dict[str, Any]] = []
    for name in names:
        manifest = read_manifest(run_dir / name)
        if manifest is None:
            if builds_recorded:
                break  # the build stopped before this stage: what follows is another run's
            continue
        upstream = manifest.get("upstream_fingerprint")  # absent from manifests of older versions
        if manifests and upstream is not None and upstream != manifests[-1].get("output_fingerprint"):
            break  # written from another output of the stage before (a build that stopped earlier since)
        manifests.append(manifest)
    return manifests


def check_stage_output(stage_dir: Path, manifest: dict[str, Any] | None = None) -> None:
    """Refuse a stage's rows.parquet or dropped.parquet that is not the file the stage wrote: its
    digest must match the manifest's `output_fingerprint` (`dropped_fingerprint`), or a file
    edited by hand, or damaged, would flow on silently. A skipped stage is checked too: the
    lineage reads its dropped rows long after the build that wrote them."""
    manifest = manifest if manifest is not None else read_manifest(stage_dir)
    if manifest is None:
        return
    _check_output_file(stage_dir, manifest, "rows.parquet", "output_fingerprint")
    _check_output_file(stage_dir, manifest, "dropped.parquet", "dropped_fingerprint")


def _check_output_file(stage_dir: Path, manifest: dict[str, Any], name: str, key: str) -> None:
    """One output file against its digest in the manifest; a manifest of an older version, or a
    stage that wrote no such file (no dropped rows), has none to check."""
    expected = manifest.get(key)
    if expected is None:
        return
    path = stage_dir / name
    if not path.is_file():
        raise CorruptRunFile(f"{path} is missing though its manifest says the stage completed; delete {stage_dir} "
                             "to run that stage again")
    actual = file_digest(path)
    if actual != expected:
        raise CorruptRunFile(
            f"{path} changed since stage {manifest.get('stage')!r} wrote it (fingerprint {actual}, its manifest says "
            f"{expected}); delete {stage_dir} (or build --from {manifest.get('stage')}) to make it again"
        )


def load_stage_rows(stage_dir: Path, columns: list[str] | None = None) -> datasets.Dataset:
    """A stage's kept rows (zero rows is a valid output), checked against its manifest."""
    check_stage_output(stage_dir)
    return _stage_rows(stage_dir, columns)


def _stage_rows(stage_dir: Path, columns: list[str] | None = None) -> datasets.Dataset:
    """A stage's kept rows, unchecked: for the rows a build has just written and hashed."""
    from m1data.reading.readers import parquet_dataset

    return parquet_dataset(stage_dir / "rows.parquet", columns=columns)


def load_stage_dropped(stage_dir: Path, checked: bool = False) -> datasets.Dataset | None:
    """A stage's dropped rows (None: it dropped none), checked against its manifest; `checked`:
    by the caller already, with `load_stage_rows` (which checks both files), so it is not hashed
    a second time (the lineage reads both)."""
    from m1data.reading.readers import parquet_dataset

    path = stage_dir / "dropped.parquet"
    manifest = None if checked else read_manifest(stage_dir)
    if manifest is not None:
        _check_output_file(stage_dir, manifest, "dropped.parquet", "dropped_fingerprint")
    return parquet_dataset(path) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Running


class StageFailed(M1DataError, RuntimeError):
    pass


class RunLocked(UserError, RuntimeError):
    """Another build holds the run folder, or another file run its OUT: one line, not a bug."""


LOCK_FILE = ".m1data.lock"
_HELD: dict[Path, tuple[int, int]] = {}  # run folders this process has locked: its lock file's (device, inode)
_HOLDERS: dict[Path, int] = {}  # the thread holding each of them (`run_lock`)


@contextlib.contextmanager
def run_lock(run_dir: str | Path, what: str = "build") -> Iterator[None]:
    """Hold the run folder for one build: an OS lock (flock) on RUN_DIR/.m1data.lock, released by
    the OS when the process ends however it ends, so a crash leaves no stale lock. A second build
    into the same folder is refused at once, naming the holder, instead of both writing the same
    stage folders. Re-entrant within a thread (a build holds it around run_pipeline and export), not
    a process: a build from a second thread went ahead and wrote the first's stage folders. Nothing
    enters it again from another thread: a job that `run_sync` moves to a thread of its own (a
    notebook's infer run or sweep) takes its folders on that thread; a build's calls moved there take none.
    `what` holds it, for the refusal: an infer run's or sweep's --out is held the same way."""
    run_dir = Path(run_dir).resolve()
    if _HOLDERS.get(run_dir) == threading.get_ident():
        yield
        return
    with storage_errors(run_dir):  # a read-only or full disk: one line, before any stage runs
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take_lock(fd, f"{run_dir} is in use by another {what}", "write into another --out")
        held = os.fstat(fd)
        _HELD[run_dir] = (held.st_dev, held.st_ino)
        _HOLDERS[run_dir] = threading.get_ident()
        try:
            yield
        finally:
            _HOLDERS.pop(run_dir, None)
            _HELD.pop(run_dir, None)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _take_lock(fd: int, in_use: str, instead: str) -> None:
    """flock `fd` for this process and write who holds it there, or refuse (RunLocked) at once,
    naming the holder, when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        raise RunLocked(f"{in_use} ({holder}); wait for it to finish or {instead}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)


_OUTS_HELD: dict[Path, int] = {}  # the OUTs of file runs this process holds: the holding thread (`output_lock`)


@contextlib.contextmanager
def output_lock(out_path: str | Path) -> Iterator[None]:
    """Hold OUT for one file run, as `run_lock` holds a build's folder: two runs into one OUT
    wrote their OUT, dropped file and statistics in turn (OUT of one beside the other's
    statistics; two LLM runs paid for the same requests twice). The second now stops at once.
    The lock file (.OUT.lock) goes when the run ends, so OUT's folder holds only what the run
    wrote; a kill leaves it, unlocked (the OS releases the lock), and the next run takes it.
    Re-entrant within a thread (an LLM file run holds it around its server and `run_on_file`), not
    a process: two threads' runs into one OUT raced as two processes' did (one lost its OUT)."""
    out_path = Path(out_path).expanduser().resolve()
    if _OUTS_HELD.get(out_path) == threading.get_ident():
        yield
        return
    made = _missing_folders(out_path.parent)
    try:
        with _lock_beside(out_path, f"{out_path} is being written by another file run", "choose another OUT"):
            _OUTS_HELD[out_path] = threading.get_ident()
            try:
                yield
            finally:
                _OUTS_HELD.pop(out_path, None)
    finally:
        for folder in made:  # a run refused before it wrote leaves no empty folders
            try:
                folder.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def _lock_beside(path: Path, in_use: str, instead: str) -> Iterator[None]:
    """Hold the lock file `.NAME.lock` beside `path` (its folder made if need be), refused as
    `_take_lock` refuses; the file goes when the lock is let go. The one mechanism of
    `output_lock` and `cache_lock`."""
    lock = path.with_name(f".{path.name}.lock")
    with storage_errors(lock):
        lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock_file(lock, in_use, instead)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # under the lock: see `_lock_file`
        os.close(fd)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first: all that a run into
    OUT creates and must take away again when it wrote nothing (OUT a/b/out.jsonl made a and b)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _lock_file(lock: Path, in_use: str, instead: str) -> int:
    """An open, locked `lock` (refused as `_take_lock` refuses). A run that got the lock of a file
    its holder had just removed holds a file no one else will open: it opens the one now at the
    path and locks that."""
    while True:
        with storage_errors(lock):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _take_lock(fd, in_use, instead)
            now = os.stat(lock)
        except FileNotFoundError:
            now = None
        except BaseException:
            os.close(fd)
            raise
        held = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)


@contextlib.contextmanager
def cache_lock(cache_path: str | Path, instead: str = "give --cache another file") -> Iterator[None]:
    """Hold an LLM reply cache for one file run, as `output_lock` holds OUT. Why: two runs into
    different OUTs sharing one --cache each looked the cache up before the other's replies were in
    it, so both sent, and paid for, the same requests; the second now stops at once, naming the
    holder. Not re-entrant: one run holds a cache once, and a second thread is refused as a second
    process is (each opens its own lock). The lock is a file beside the cache (.NAME.lock), never
    the SQLite file: closing any descriptor of that file drops SQLite's own locks on it in this
    process. It goes when the run ends, as OUT's does. A distributed run's workers open the cache
    without it: the run holding it is theirs. `instead`: what the refused run can change (a
    command's --cache; a build's config names it `cache_path`)."""
    cache_path = Path(cache_path).expanduser().resolve()
    with _lock_beside(cache_path, f"the reply cache {cache_path} is in use by another run", instead):
        yield


class RunFolderGone(M1DataError, RuntimeError):
    """The run folder was removed or replaced while a build held it."""


def check_run_folder(run_dir: str | Path) -> None:
    """Stop a build whose run folder is no longer the one it locked (deleted, moved, replaced,
    its disk unmounted): writing on would make the folder anew, without the earlier stages, the
    build record or the lock, and the build would end looking complete. The lock file is the
    witness: the one in the folder must be the very file (device and inode) the lock is on."""
    run_dir = Path(run_dir).resolve()
    held = _HELD.get(run_dir)
    if held is None:
        return
    try:
        now = os.stat(run_dir / LOCK_FILE)
    except OSError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != held:
        raise RunFolderGone(f"{run_dir} was removed or replaced while this build ran in it; nothing more is "
                            "written there. Check the folder (and the disk it is on), then run the build again")


class StageIncomplete(RuntimeError):
    """A stage was written but some of its requests failed transiently: the run stops after it."""

    def __init__(self, stage: str, transient: int, stage_dir: Path):
        super().__init__(
            f"stage {stage!r} is incomplete: {transient:,} request{'s' if transient != 1 else ''} failed transiently "
            "(timeouts, 5xx, dropped "
            f"connections) after every retry. Its outputs are in {stage_dir} for inspection; run the same "
            "command again to send exactly those requests (the cache answers the rest)."
        )
        self.stage, self.transient = stage, transient


class StageNotReady(RuntimeError):
    """A stage's preflight failed: the run stops before it, completed stages intact."""

    def __init__(self, stage: str, problem: str):
        problem = strip_userinfo(problem)
        super().__init__(f"stopped before stage {stage!r}: {problem}")
        self.stage, self.problem = stage, problem


def lost_rows(dropped: datasets.Dataset | None) -> tuple[list[Any], int]:
    """The ids of the dropped rows the stage lost (a `superseded` row is a record of a try, not
    a lost row; see `drop_counts`), and how many there are (ids empty without an id column)."""
    if dropped is None or len(dropped) == 0:
        return [], 0
    ids = column_values(dropped, "id") if "id" in dropped.column_names else []
    if SUPERSEDED not in dropped.column_names:
        return ids, len(dropped)
    past = column_values(dropped, SUPERSEDED)
    return [i for i, p in zip(ids, past, strict=False) if not p], sum(1 for p in past if not p)


def _some(ids: Counter[Any]) -> str:
    return repr(sorted(ids, key=str)[0])


def account_kept_or_dropped(stage: str, rows: datasets.Dataset | None, result: StageResult) -> None:
    """Rows in = rows kept + rows dropped, id by id where the rows have ids: no id both kept and
    dropped, none lost, none new or twice. One line naming the stage and the counts."""
    n_in = 0 if rows is None else len(rows)
    lost, n_lost = lost_rows(result.dropped)
    n_kept = len(result.rows)
    counts = f"{n_in:,} in, {n_kept:,} kept + {n_lost:,} dropped"
    if rows is None and n_kept + n_lost:
        raise StageFailed(f"stage {stage!r} made rows out of no input ({counts}); a stage that reads its rows "
                          "from elsewhere says so (reads_rows = True)")
    has_ids = rows is not None and all("id" in d.column_names for d in (rows, result.rows)) and len(lost) == n_lost
    given = Counter(column_values(rows, "id")) if has_ids else Counter()
    # ids a user's file repeats or leaves out name no one row: counted, and the others checked one
    # by one (they stopped `m1data dedup`/`decontaminate` as "both kept and dropped")
    shared = [i for i, n in given.items() if n > 1 or i is None]
    if (not has_ids or shared) and n_kept + n_lost != n_in:
        raise StageFailed(f"stage {stage!r} does not account for its rows: {counts} = {n_kept + n_lost:,}")
    if not has_ids:
        return
    kept, dropped = Counter(column_values(result.rows, "id")), Counter(lost)
    for name in shared:
        for ids in (given, kept, dropped):
            ids.pop(name, None)
    both = kept.keys() & dropped.keys()
    if both:
        raise StageFailed(f"stage {stage!r} both kept and dropped {len(both):,} row id(s) ({counts}), e.g. "
                          f"{_some(Counter(both))}")
    missing, extra = given - (kept + dropped), (kept + dropped) - given
    if missing or extra:
        what = [f"{sum(missing.values()):,} neither kept nor dropped (e.g. {_some(missing)})" if missing else "",
                f"{sum(extra.values()):,} not in its input or there twice (e.g. {_some(extra)})" if extra else ""]
        raise StageFailed(f"stage {stage!r} does not account for its rows: {counts}; "
                          f"{'; '.join(w for w in what if w)}")


def account_read(stage: str, rows: datasets.Dataset | None, result: StageResult) -> None:
    """A reader's terms (`Stage.reads_rows`): it takes no input rows (those would be lost), and
    each row it read is kept or dropped once: no id kept and dropped, none twice. Records it
    left out of scope are counted by the reader itself (`LoadResult.out_of_scope`)."""
    if rows is not None:
        raise StageFailed(f"stage {stage!r} reads its rows from elsewhere, so it comes first: the {len(rows):,} "
                          "rows handed to it would be lost")
    lost, _ = lost_rows(result.dropped)
    kept = Counter(column_values(result.rows, "id")) if "id" in result.rows.column_names else Counter()
    counts = f"{len(result.rows):,} kept + {len(lost):,} dropped"
    both = kept.keys() & set(lost)
    if both:
        raise StageFailed(f"stage {stage!r} both kept and dropped {len(both):,} row id(s) ({counts}), e.g. "
                          f"{_some(Counter(both))}")
    twice = Counter({i: n - 1 for i, n in (kept + Counter(lost)).items() if n > 1})
    if twice:
        raise StageFailed(f"stage {stage!r} gave {sum(twice.values()):,} row id(s) more than once ({counts}), "
                          f"e.g. {_some(twice)}")


def check_accounting(stage: Stage, rows: datasets.Dataset | None, result: StageResult) -> None:
    """`Stage.account`, for any stage: one that has the Stage interface without deriving from it
    (duck-typed) gets the default check, by its `reads_rows`, rather than an AttributeError."""
    own = getattr(stage, "account", None)
    if own is not None:
        own(rows, result)
    elif getattr(stage, "reads_rows", False):
        account_read(stage.name, rows, result)
    else:
        account_kept_or_dropped(stage.name, rows, result)


def _check_dropped(stage: Stage, dropped: datasets.Dataset | None) -> None:
    if dropped is None:
        return
    missing = [c for c in DROP_COLUMNS if c not in dropped.column_names]
    if missing:
        raise StageFailed(f"stage {stage.name!r} returned dropped rows without columns {missing}")


def _tmp_dir(stage_dir: Path) -> Path:
    return stage_dir.with_name(stage_dir.name + ".tmp")


def _old_dir(stage_dir: Path) -> Path:
    return stage_dir.with_name(stage_dir.name + ".old")


def _merge_sqlite(source: Path, target: Path) -> None:
    """Fold a reply cache found in the wrong place into the state folder's, then delete it. A
    merge (not a rename) because the file may come with a WAL that holds its last commits, and
    because running it again after a crash half-way copies nothing twice."""
    from m1data.llm.cache import Cache

    with Cache(target) as cache:
        copied = cache.merge_from(source)
    for suffix in (*_SQLITE_SIDECARS, ""):
        Path(f"{source}{suffix}").unlink(missing_ok=True)
    log.info(f"recovered {copied} cached replies from {source} into {target}")


def _move_state(folder: Path, state_dir: Path) -> None:
    """Everything in `folder` that is not a stage output goes to `state_dir`; nothing there is
    overwritten (caches are merged, other files kept under a new name)."""
    for item in sorted(folder.iterdir()):
        if item.name in OUTPUT_FILES or item.name.endswith(_SQLITE_SIDECARS):
            continue
        state_dir.mkdir(parents=True, exist_ok=True)
        target = state_dir / item.name
        if item.suffix == ".sqlite" and item.is_file():
            _merge_sqlite(item, target)
        elif not target.exists():
            item.rename(target)
        else:
            item.rename(state_dir / f"{item.name}.recovered-{time.time_ns()}")
    for item in folder.iterdir():  # a WAL whose database is gone holds nothing readable
        if item.name.endswith(_SQLITE_SIDECARS) and not Path(str(item).rsplit("-", 1)[0]).exists():
            item.unlink()


def _recover(stage_dir: Path, state_dir: Path) -> None:
    """Put a stage back in order after a crash, before anything else touches it (see the module
    docstring): state first, then an interrupted swap, then the leftovers."""
    tmp, old = _tmp_dir(stage_dir), _old_dir(stage_dir)
    for folder in (stage_dir, tmp, old):
        if folder.is_dir():
            _move_state(folder, state_dir)
    if not stage_dir.exists() and (tmp / "manifest.json").is_file():
        fsync_tree(tmp)  # written by an older version, without fsync: on disk before it is the stage
        tmp.rename(stage_dir)  # the swap was cut between its two renames
        fsync_folder(stage_dir.parent)
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)


def _write_stage(stage_dir: Path, state_dir: Path, result: StageResult, manifest: dict[str, Any]) -> None:
    """Write the outputs to `NN_name.tmp` and swap it in, so a stage is all or nothing. The stage
    folder holds outputs only; anything else a stage left there goes to its state folder first."""
    tmp, old = _tmp_dir(stage_dir), _old_dir(stage_dir)
    with storage_errors(stage_dir):  # a full disk is the user's to fix: one line naming the stage
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            _write_outputs(tmp, result, manifest)
            fsync_tree(tmp)  # on disk before the rename makes them the stage's (`m1data.durable`)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a half-written file would keep a full disk full
            raise
        if stage_dir.exists():
            _move_state(stage_dir, state_dir)
            stage_dir.rename(old)
        tmp.rename(stage_dir)
        fsync_folder(stage_dir.parent)
        if old.exists():
            shutil.rmtree(old)


def _write_outputs(tmp: Path, result: StageResult, manifest: dict[str, Any]) -> None:
    """A stage's output files in `tmp`, the manifest last, with the digests it checks them by."""
    tmp.mkdir(parents=True)
    flattened(result.rows).to_parquet(str(tmp / "rows.parquet"))  # a selection written as it is: slow
    if result.dropped is not None and len(result.dropped):
        flattened(result.dropped).to_parquet(str(tmp / "dropped.parquet"))
    manifest["output_fingerprint"] = file_digest(tmp / "rows.parquet")
    if (tmp / "dropped.parquet").is_file():
        manifest["dropped_fingerprint"] = file_digest(tmp / "dropped.parquet")
    # whole or absent: `_recover` takes a manifest in `tmp` for a swap cut short (a torn one was adopted)
    write_atomic(tmp / "manifest.json", json.dumps(manifest, indent=2, default=str))


def check_stage_names(stages: Sequence[Stage], start: str | None = None, until: str | None = None) -> list[str]:
    """The stage names, unique, with `start` (--from) and `until` among them; a build checks this
    before it starts anything (a Ray instance, the embedded model's server)."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise UserError(f"stage names must be unique: {names}")
    for flag, wanted in (("--from", start), ("--until", until)):
        if wanted is not None and wanted not in names:
            raise UserError(f"no stage named {wanted!r} ({flag}); the stages are {', '.join(names)}")
    if start is not None and until is not None and names.index(until) < names.index(start):
        raise UserError(f"--until {until} comes before --from {start}: nothing would run (the stages are "
                        f"{', '.join(names)})")
    return names


@datasets_bars_off()
def run_pipeline(
    stages: Sequence[Stage],
    run_dir: str | Path,
    *,
    start: str | None = None,
    until: str | None = None,
    force: bool = False,
    executor: Any = None,
) -> datasets.Dataset | None:
    """Run `stages` in order under `run_dir` and return the last stage's rows.

    `start` re-runs from that stage (earlier stages must have completed before); `until` stops
    after that stage. Stages whose manifest matches are skipped unless `force` or `start` says
    otherwise. `executor` (m1data.running.distributed) runs the work elsewhere with the same results.
    """
    run_dir = Path(run_dir).expanduser()
    names = check_stage_names(stages, start, until)
    start_at = names.index(start) if start else 0
    stop_at = names.index(until) if until else len(stages) - 1
    check_columns(stages[: stop_at + 1])
    if executor is None:  # on a cluster the stages run on workers, whose packages are theirs
        _check_installed(stages[start_at: stop_at + 1], run_dir, start_at, force or start is not None)
    with run_lock(run_dir), _caches_held(stages[start_at: stop_at + 1]):
        _record_build(run_dir, stages)
        return _run_stages(stages[: stop_at + 1], run_dir, start, start_at, force, executor)


@contextlib.contextmanager
def _caches_held(stages: Sequence[Stage]) -> Iterator[None]:
    """Hold every reply cache the stages name (`Stage.shared_caches`), each once: two stages may
    name the same file, and `cache_lock` does not let its holder in again."""
    named = (getattr(stage, "shared_caches", tuple)() for stage in stages)  # a duck-typed stage names none
    paths = sorted({Path(path).expanduser().resolve() for names in named for path in names})
    with contextlib.ExitStack() as held:
        for path in paths:
            held.enter_context(cache_lock(path, "name another cache_path in the config"))
        yield


def with_columns(before: frozenset[str] | None, added: Iterable[str]) -> frozenset[str] | None:
    """`before` and the columns a stage adds; unknown stays unknown (`Stage.columns_after`)."""
    return None if before is None else before | frozenset(added)


def check_columns(stages: Sequence[Stage]) -> None:
    """Stop before anything runs when a stage needs a column (`Stage.columns_needed`: the
    sampler's levels) that no stage before it gives (`Stage.columns_after`). Where the columns
    are not known (rows a user brings, a stage that does not say) nothing is checked after; nor
    after a subclass written outside m1data that inherits `columns_after`: it may add columns
    its base class does not."""
    have: frozenset[str] | None = None
    for stage in stages:
        needed = getattr(stage, "columns_needed", tuple)()  # a stage written without the base class
        absent = [name for name in needed if have is not None and name not in have]
        if absent:
            raise UserError(f"stage {stage.name!r} needs the column{'s' * (len(absent) > 1)} "
                            f"{', '.join(map(repr, absent))}, which no stage before it gives (its rows will have "
                            f"{', '.join(sorted(have))}); nothing was run")
        after = getattr(stage, "columns_after", None)
        says = type(stage).__module__.startswith("m1data.") or "columns_after" in vars(type(stage))
        have = after(have) if after is not None and says else None


def _check_installed(stages: Sequence[Stage], run_dir: Path, first: int, rerun: bool) -> None:
    """Stop before anything runs when a stage this run may reach needs what is not installed
    (`Stage.missing`); a stage that completed in `run_dir` is not asked, unless it runs again."""
    for index, stage in enumerate(stages, start=first):
        previous = read_manifest(run_dir / stage_dirname(index, stage.name))
        if not rerun and previous is not None and previous.get("complete", True):
            continue
        missing = getattr(stage, "missing", None)  # a stage written without the base class may not say
        problem = missing() if missing is not None else None
        if problem is not None:
            raise UserError(f"stage {stage.name!r} cannot run here: {problem}; nothing was run")


def _run_stages(
    stages: Sequence[Stage], run_dir: Path, start: str | None, start_at: int, force: bool, executor: Any
) -> datasets.Dataset | None:
    rows: datasets.Dataset | None = None
    input_fp = "none"
    for index, stage in enumerate(stages):
        stage_dir = run_dir / stage_dirname(index, stage.name)
        state_dir = state_dir_of(run_dir, index, stage.name)
        _recover(stage_dir, state_dir)
        config = scrub(stage.config_dict())  # as recorded: no credentials inside URLs
        upstream_fp = input_fp  # the previous stage's output_fingerprint ("none" for the first)
        input_fp = _fingerprint(input_fp, stage.external_fingerprint())
        previous = read_manifest(stage_dir)
        complete = previous is not None and previous.get("complete", True)
        matches = complete and previous.get("config") == config and previous.get("input_fingerprint") == input_fp
        if index < start_at:
            if previous is None:
                raise StageFailed(f"cannot start at {start!r}: stage {stage.name!r} has not completed in {run_dir}")
            if not complete:
                raise StageFailed(
                    f"cannot start at {start!r}: stage {stage.name!r} is incomplete "
                    f"({previous.get('transient_failures')} transient failures); run without --from to finish it"
                )
            matches = True
        elif force or (start is not None):
            matches = False
        if matches:
            log.info(f"skip {stage.name} (manifest matches)")
            rows = load_stage_rows(stage_dir)  # checked against the manifest's output fingerprint
            input_fp = previous["output_fingerprint"]
            continue

        began = time.perf_counter()
        if rows is not None and len(rows) == 0:
            # Zero rows is a valid outcome of an earlier stage; this one has nothing to do and
            # needs nothing (an LLM stage no endpoint). Its output is the empty input.
            log.warning(f"skip {stage.name}: nothing to do (an earlier stage left 0 rows)")
            result = StageResult(rows=rows, stats={"nothing_to_do": "no input rows"})
        else:
            problem = stage.preflight()
            if problem is not None:
                raise StageNotReady(stage.name, problem)
            log.info(f"run  {stage.name}")
            stage_dir.mkdir(parents=True, exist_ok=True)
            ctx = RunContext(run_dir=run_dir, stage_dir=stage_dir, state_dir=state_dir, executor=executor)
            parallel = executor is not None and stage.row_parallel
            result = executor.run_stage(stage, rows, ctx) if parallel else stage.run(rows, ctx)
        _check_dropped(stage, result.dropped)
        check_accounting(stage, rows, result)  # every executor's result comes here before it is recorded
        check_run_folder(run_dir)
        manifest = {
            "stage": stage.name,
            "index": index,
            "config": config,
            "input_fingerprint": input_fp,
            "upstream_fingerprint": upstream_fp,
            "counts_in": source_counts(rows),
            "counts_out": source_counts(result.rows),
            "rows_in": 0 if rows is None else len(rows),
            "rows_out": len(result.rows),
            "drops": drop_counts(result.dropped),
            "stats": scrub(result.stats),
            "complete": result.transient_failures == 0,
            "transient_failures": result.transient_failures,
            "wall_time_s": round(time.perf_counter() - began, 3),
            "m1data_version": __version__,
        }
        _write_stage(stage_dir, state_dir, result, manifest)
        # Not hashed again: the manifest's digests were taken from these files a moment ago
        # (`_write_outputs`), under the run lock; a later build or command checks them.
        rows = _stage_rows(stage_dir)
        input_fp = manifest["output_fingerprint"]
        log.info(
            f"      {stage.name}: {manifest['rows_in']} -> {manifest['rows_out']} rows "
            f"in {manifest['wall_time_s']:.1f}s"
        )
        if result.transient_failures:
            raise StageIncomplete(stage.name, result.transient_failures, stage_dir)
    return rows


def sum_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Blocks' statistics as one: numbers summed (None, an unknown cost, absorbs; float sums are
    rounded as the LLM runner rounds costs, so the grouping does not show), dicts merged
    key by key, other values kept when every block agrees. A value the blocks disagree on and
    that cannot be summed (a mean, a percentile) is an error: its stage must override
    ``Stage.merge_stats(parts, rows)``."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for part in parts for k in part):
        values = [part[key] for part in parts if key in part]
        out[key] = _merge_value(key, values)
    return out


def _merge_value(key: str, values: list[Any]) -> Any:
    if all(isinstance(v, dict) for v in values):
        return sum_stats(values)
    numbers = [v for v in values if v is not None]
    if numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        if len(numbers) < len(values):
            return None
        from m1data.llm.runner import COST_DIGITS

        total = sum(numbers)
        return round(total, COST_DIGITS) if isinstance(total, float) else total
    if all(v == values[0] for v in values):
        return values[0]
    raise UserError(f"cannot merge statistic {key!r} across blocks: {values[:3]} ...")


__all__ = [
    "DROP_COLUMNS",
    "LOCK_FILE",
    "OUTPUT_FILES",
    "STATE_DIR",
    "SUPERSEDED",
    "CorruptRunFile",
    "RunContext",
    "RunFolderGone",
    "RunLocked",
    "Stage",
    "StageFailed",
    "StageIncomplete",
    "StageNotReady",
    "StageResult",
    "account_kept_or_dropped",
    "account_read",
    "add_columns",
    "cache_lock",
    "check_accounting",
    "check_rows",
    "check_texts",
    "check_run_folder",
    "check_stage_names",
    "check_stage_output",
    "drop_counts",
    "dropped_path",
    "dropped_rows",
    "file_digest",
    "input_digest",
    "in_memory",
    "load_stage_dropped",
    "load_stage_rows",
    "lost_rows",
    "output_lock",
    "portable",
    "read_manifest",
    "read_manifests",
    "refuse_overwrite",
    "row_name",
    "run_lock",
    "run_on_file",
    "run_pipeline",
    "source_counts",
    "stage_dirname",
    "state_dir_of",
    "write_result",
    "sum_stats",
]
