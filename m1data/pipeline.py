"""The stage runner: an ordered list of stages, each Dataset in and Dataset out, with a ledger.

Every stage writes its output under the run directory as `NN_name/rows.parquet`, the rows it
removed (with reasons) as `dropped.parquet`, and a `manifest.json` with its config, the
fingerprint of its input, per-source counts in and out, drop reasons with counts, wall time and
any stage statistics (tokens, cost, per-eval-set counts). The manifest is written last, after
the parquet files are in place, so a crash mid-stage leaves no manifest and earlier stages stay
intact. A re-run skips every stage whose manifest matches its config and input fingerprint.

The funnel (paper Table 3) and the lineage of any row are read back from these manifests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
from rich.console import Console

from m1data import __version__

console = Console(stderr=True)

DROP_COLUMNS = ("id", "source", "reason")


@dataclass
class StageResult:
    """What a stage hands back: the kept rows, the removed rows (with at least id, source,
    reason columns; any extra columns are kept in dropped.parquet) and statistics for the
    manifest."""

    rows: datasets.Dataset
    dropped: datasets.Dataset | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Where a stage may keep state that must survive a crash (an LLM cache, say)."""

    run_dir: Path
    stage_dir: Path
    executor: Any = None  # None: run here; else an m1data.distributed.RayExecutor


class Stage(ABC):
    """One step of a pipeline. Subclasses set `name`, hold a dataclass `config`, and implement
    `run`. The first stage of a pipeline receives `rows=None`. `row_parallel`: each row's output
    depends on that row alone, so a distributed executor may run the stage block by block."""

    name: ClassVar[str]
    config: Any
    row_parallel: ClassVar[bool] = False

    @abstractmethod
    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult: ...

    def preflight(self) -> str | None:
        """None when the stage can run now; otherwise what it is missing (a model endpoint, a
        key). Checked only for stages that are about to run, not for those skipped."""
        return None

    def external_fingerprint(self) -> str:
        """Fingerprint of inputs that are not the previous stage's rows (files a loader reads)."""
        return ""

    def config_dict(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self.config):
            return json.loads(json.dumps(dataclasses.asdict(self.config), default=str))
        return {}


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


def source_counts(ds: datasets.Dataset | None) -> dict[str, int]:
    if ds is None or len(ds) == 0 or "source" not in ds.column_names:
        return {}
    return dict(sorted(Counter(ds["source"]).items()))


def drop_counts(dropped: datasets.Dataset | None) -> dict[str, dict[str, int]]:
    """{reason: {source: count}}."""
    if dropped is None or len(dropped) == 0:
        return {}
    table: dict[str, Counter[str]] = {}
    for reason, source in zip(dropped["reason"], dropped["source"]):
        table.setdefault(reason, Counter())[source] += 1
    return {reason: dict(sorted(counts.items())) for reason, counts in sorted(table.items())}


def stage_dirname(index: int, name: str) -> str:
    return f"{index:02d}_{name}"


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def read_manifests(run_dir: Path) -> list[dict[str, Any]]:
    """All completed stage manifests of a run, in pipeline order."""
    manifests = []
    for stage_dir in sorted(p for p in Path(run_dir).iterdir() if p.is_dir()):
        manifest = read_manifest(stage_dir)
        if manifest is not None:
            manifests.append(manifest)
    return manifests


def load_stage_rows(stage_dir: Path) -> datasets.Dataset:
    return datasets.Dataset.from_parquet(str(stage_dir / "rows.parquet"))


def load_stage_dropped(stage_dir: Path) -> datasets.Dataset | None:
    path = stage_dir / "dropped.parquet"
    return datasets.Dataset.from_parquet(str(path)) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Running


class StageFailed(RuntimeError):
    pass


class StageNotReady(RuntimeError):
    """A stage's preflight failed: the run stops before it, completed stages intact."""

    def __init__(self, stage: str, problem: str):
        super().__init__(f"stopped before stage {stage!r}: {problem}")
        self.stage, self.problem = stage, problem


def _check_dropped(stage: Stage, dropped: datasets.Dataset | None) -> None:
    if dropped is None:
        return
    missing = [c for c in DROP_COLUMNS if c not in dropped.column_names]
    if missing:
        raise StageFailed(f"stage {stage.name!r} returned dropped rows without columns {missing}")


def _write_stage(stage_dir: Path, result: StageResult, manifest: dict[str, Any]) -> None:
    """Write to a temporary folder and rename it into place, so a stage is all or nothing."""
    tmp = stage_dir.with_name(stage_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    # Keep the stage's private state (e.g. an LLM cache) across the swap.
    if stage_dir.exists():
        for item in stage_dir.iterdir():
            if item.name not in ("rows.parquet", "dropped.parquet", "manifest.json"):
                item.rename(tmp / item.name)
        shutil.rmtree(stage_dir)
    result.rows.to_parquet(str(tmp / "rows.parquet"))
    if result.dropped is not None and len(result.dropped):
        result.dropped.to_parquet(str(tmp / "dropped.parquet"))
    manifest["output_fingerprint"] = file_digest(tmp / "rows.parquet")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    tmp.rename(stage_dir)


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
    otherwise. `executor` (m1data.distributed) runs the work elsewhere with the same results.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique: {names}")
    for wanted in (start, until):
        if wanted is not None and wanted not in names:
            raise ValueError(f"no stage named {wanted!r}; stages are {', '.join(names)}")
    start_at = names.index(start) if start else 0
    stop_at = names.index(until) if until else len(stages) - 1

    rows: datasets.Dataset | None = None
    input_fp = "none"
    for index, stage in enumerate(stages[: stop_at + 1]):
        stage_dir = run_dir / stage_dirname(index, stage.name)
        config = stage.config_dict()
        input_fp = _fingerprint(input_fp, stage.external_fingerprint())
        previous = read_manifest(stage_dir)
        matches = (
            previous is not None
            and previous.get("config") == config
            and previous.get("input_fingerprint") == input_fp
        )
        if index < start_at:
            if previous is None:
                raise StageFailed(f"cannot start at {start!r}: stage {stage.name!r} has not completed in {run_dir}")
            matches = True
        elif force or (start is not None):
            matches = False
        if matches:
            console.print(f"[dim]skip[/dim] {stage.name} (manifest matches)")
            rows = load_stage_rows(stage_dir)
            input_fp = previous["output_fingerprint"]
            continue

        problem = stage.preflight()
        if problem is not None:
            raise StageNotReady(stage.name, problem)
        console.print(f"[bold]run[/bold]  {stage.name}")
        stage_dir.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        ctx = RunContext(run_dir=run_dir, stage_dir=stage_dir, executor=executor)
        parallel = executor is not None and stage.row_parallel
        result = executor.run_stage(stage, rows, ctx) if parallel else stage.run(rows, ctx)
        _check_dropped(stage, result.dropped)
        manifest = {
            "stage": stage.name,
            "index": index,
            "config": config,
            "input_fingerprint": input_fp,
            "counts_in": source_counts(rows),
            "counts_out": source_counts(result.rows),
            "rows_in": 0 if rows is None else len(rows),
            "rows_out": len(result.rows),
            "drops": drop_counts(result.dropped),
            "stats": result.stats,
            "wall_time_s": round(time.perf_counter() - began, 3),
            "m1data_version": __version__,
        }
        _write_stage(stage_dir, result, manifest)
        rows = load_stage_rows(stage_dir)
        input_fp = read_manifest(stage_dir)["output_fingerprint"]
        console.print(
            f"      {stage.name}: {manifest['rows_in']} -> {manifest['rows_out']} rows "
            f"in {manifest['wall_time_s']:.1f}s"
        )
    return rows
