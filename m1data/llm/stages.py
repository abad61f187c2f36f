"""What the LLM stages (difficulty filter, teacher traces) share: the m1 prompt, where the cache
lives, and splitting rows into kept and dropped with reasons.

Why the prompt is one function: the paper sends the students and the teacher the same text, and
the cache key depends on every character of it; two spellings would pay twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from rich.console import Console

from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.types import Reply, Request
from m1data.pipeline import RunContext

BOXED_INSTRUCTION = "Return your final response within \\boxed{}."
CACHE_FILENAME = "llm_cache.sqlite"
REQUIRED_COLUMNS = ("id", "source", "prompt", "options", "answer_idx")

console = Console(stderr=True)


def boxed_prompt(prompt: str) -> str:
    """The m1 prompt for students and teacher: the instruction, a newline, the question prompt."""
    return f"{BOXED_INSTRUCTION}\n{prompt}"


def boxed_request(model: str, prompt: str, params: dict[str, Any]) -> Request:
    """A single user message, no system message, as m1 sent it."""
    return Request(model=model, messages=({"role": "user", "content": boxed_prompt(prompt)},), params=dict(params))


def is_transient(reply: Reply) -> bool:
    """A failure that may pass (timeout, 5xx, dropped connection) after every retry: the runner
    marks these `transient` in the cache and sends them again on the next run."""
    return reply.status == "error" and bool(getattr(reply, "retryable", False))


def count_transient(replies: Sequence[Reply]) -> int:
    return sum(is_transient(r) for r in replies)


def check_rows(rows: datasets.Dataset | None, stage: str) -> datasets.Dataset:
    if rows is None:
        raise UserError(f"the {stage} stage needs input rows; it cannot be the first stage")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.column_names]
    if missing:
        raise UserError(f"the {stage} stage needs columns {missing} (see m1data.schema)")
    return rows


def open_cache(configured: str | None, ctx: RunContext | None) -> Cache:
    """The configured file, else `<state_dir>/llm_cache.sqlite`: in a build, the stage's state
    folder `RUN_DIR/cache/NN_stage/`, which no rewrite of the stage's outputs touches."""
    if configured:
        return Cache(configured)
    if ctx is None:
        raise UserError("no cache path configured and no run context to put one in")
    return Cache(Path(ctx.state_dir) / CACHE_FILENAME)


def add_columns(rows: datasets.Dataset, columns: dict[str, tuple[list[Any], Any]]) -> datasets.Dataset:
    """Append columns given as {name: (values, feature)}; explicit features keep empty inputs and
    all-null columns well typed. An existing column of the same name is replaced."""
    rows = rows.remove_columns([name for name in columns if name in rows.column_names])
    if len(rows) == 0:  # datasets cannot add a column to an empty table it has concatenated before
        features = datasets.Features({**rows.features, **{name: feature for name, (_, feature) in columns.items()}})
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    for name, (values, feature) in columns.items():
        rows = rows.add_column(name, values, feature=feature)
    return rows


def split_rows(
    rows: datasets.Dataset, reasons: Sequence[str | None], details: Sequence[str]
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(kept, dropped): rows whose reason is None are kept; the others go to dropped with
    `reason` and `detail` columns added (every other column stays, for inspection)."""
    keep = [i for i, reason in enumerate(reasons) if reason is None]
    drop = [i for i, reason in enumerate(reasons) if reason is not None]
    dropped = rows.select(drop).flatten_indices()  # add_column needs a plain table
    dropped = add_columns(
        dropped,
        {
            "reason": ([reasons[i] for i in drop], datasets.Value("string")),
            "detail": ([details[i] for i in drop], datasets.Value("string")),
        },
    )
    return rows.select(keep).flatten_indices(), dropped


def rejected_path(out_path: str | Path) -> Path:
    """Where a file run puts its dropped rows: `OUT.parquet` -> `OUT.rejected.parquet`."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.rejected{out_path.suffix}")


def default_cache_path(out_path: str | Path) -> Path:
    """A file run's cache when none is given: `OUT.parquet` -> `OUT.llm_cache.sqlite`."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.llm_cache.sqlite")


def run_on_file(stage: Any, in_path: str | Path | Sequence[str | Path], out_path: str | Path, dry_run: bool) -> dict[str, Any]:
    """An LLM stage over a file: IN rows -> OUT (kept) and OUT.rejected.<ext> (dropped, with
    reasons); returns the stage statistics. A dry run prints the plan and returns {}. IN may be
    several files or a folder of them (see `read_rows`)."""
    from m1data.readers import read_rows, write_rows

    rows = read_rows(in_path)
    if len(rows) == 0:
        console.print(f"{_names(in_path)}: 0 rows, nothing to do; {out_path} and its rejected file are written empty")
        if not dry_run:
            write_rows(rows, out_path)
            write_rows(rows, rejected_path(out_path))
        return {"rows_in": 0, "rows_out": 0, "rows_rejected": 0}
    rows = check_rows(rows, stage.name)
    if dry_run:  # reads the cache if there is one; never creates one (a dry run writes nothing)
        if Path(stage.config.cache_path).is_file():
            with Cache(stage.config.cache_path) as store:
                stage.plan(rows, store)
        else:
            stage.plan(rows, None)
        return {}
    result = stage.run(rows, None)
    write_rows(result.rows, out_path)
    write_rows(result.dropped, rejected_path(out_path))
    if result.transient_failures:
        console.print(
            f"[yellow]{result.transient_failures:,} requests failed transiently (timeouts, 5xx, dropped connections); "
            "their rows are in the rejected file with reason 'error'. Run the same command again to send exactly "
            "those (the cache answers the rest).[/yellow]"
        )
    return {
        "rows_in": len(rows),
        "rows_out": len(result.rows),
        "rows_rejected": len(result.dropped),
        "transient_failures": result.transient_failures,
        **result.stats,
    }


def _names(in_path: str | Path | Sequence[str | Path]) -> str:
    return str(in_path) if isinstance(in_path, (str, Path)) else ", ".join(map(str, in_path))

