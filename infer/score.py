"""Run budget-controlled generation over eval sets and score it with `m1data.answers` (Table 1).

```python
from m1data.infer.budget import BudgetConfig
from m1data.infer.score import run_infer
metrics = run_infer(engine, {"medqa_test": rows}, "runs/infer/m1-7B-1K",
                    BudgetConfig(model="m1-7B-1K", thinking_budget=4096))
```

Eval sets are Datasets in the m1data row schema (the columns used are ``prompt``, ``options``,
``answer_idx`` and, if present, ``id``), or paths to JSONL / JSON / parquet files of such rows
(`m1data.evalsets` loads the named sets of Table 1 into that schema).

Written to `out_dir`:

* ``records.jsonl``: one line per question (eval set, id, gold and predicted letter, how the
  answer was read, correctness, and the whole `BudgetRecord`: thinking, thinking tokens, forcing
  rounds, stop reason, answer). Written set by set, so a long run shows progress.
* ``metrics.json``: the setting, and per set: n, correct, accuracy, errors, stop reasons,
  mean thinking tokens and forcing rounds; plus the unweighted mean accuracy over sets, which is
  how Table 1's "average" is computed.

An engine failure on a question is scored wrong and counted under ``errors``: dropping it would
make a flaky endpoint look accurate.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
from m1data.infer.budget import BudgetConfig, BudgetRecord, build_prompt, generate_many

from m1data.answers import grade
from m1data.errors import UserError
from m1data.llm.types import Engine

__all__ = ["EvalSource", "infer", "load_rows", "run_infer", "score_record", "summarize"]

EvalSource = datasets.Dataset | str | Path
REQUIRED = ("prompt", "options", "answer_idx")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def load_rows(source: EvalSource) -> datasets.Dataset:
    """An eval set as a Dataset: given as one, or read from a .jsonl/.json/.parquet file."""
    if isinstance(source, datasets.Dataset):
        ds = source
    else:
        path = Path(source)
        if path.suffix in (".jsonl", ".json"):
            ds = datasets.Dataset.from_json(str(path))
        elif path.suffix == ".parquet":
            ds = datasets.Dataset.from_parquet(str(path))
        else:
            raise UserError(f"{path}: eval files must be .jsonl, .json or .parquet")
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise UserError(f"eval set lacks column(s) {missing}; rows need {list(REQUIRED)}")
    return ds


def score_record(record: BudgetRecord, options: list[str], answer_idx: int) -> dict[str, Any]:
    """Predicted letter, extraction method and correctness of one generation."""
    if record.stop_reason == "error":
        return {"predicted": None, "method": "error", "verdict": "no_answer", "correct": False}
    result = grade(record.reply, options, answer_idx)
    return {
        "predicted": result.extraction.letter,
        "method": result.extraction.method,
        "verdict": result.extraction.verdict,
        "correct": result.correct,
    }


def summarize(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-set metrics of scored record lines (as written to records.jsonl)."""
    n = len(lines)
    correct = sum(line["correct"] for line in lines)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "errors": sum(line["stop_reason"] == "error" for line in lines),
        "stop_reasons": dict(Counter(line["stop_reason"] for line in lines)),
        "methods": dict(Counter(line["method"] for line in lines)),
        "mean_thinking_tokens": sum(line["thinking_tokens"] for line in lines) / n if n else 0.0,
        "mean_forcing_rounds": sum(line["forcing_rounds"] for line in lines) / n if n else 0.0,
    }


async def infer(
    engine: Engine,
    eval_sets: Mapping[str, EvalSource],
    out_dir: str | Path,
    config: BudgetConfig,
    *,
    limit: int | None = None,
    render: Callable[[list[dict[str, str]]], str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate, score and write one setting over every eval set; returns the metrics.

    `limit` keeps the first N rows of each set (smoke runs). `render` is passed to
    `build_prompt` for models not trained with the Qwen2.5 template. `progress(set, done, total)`
    is called as questions finish.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    records_path.write_text("")
    per_set: dict[str, Any] = {}
    for name, source in eval_sets.items():
        rows = load_rows(source)
        if limit is not None:
            rows = rows.select(range(min(limit, len(rows))))
        prompts = [build_prompt(p, render) for p in rows["prompt"]]
        done = 0

        def tick(_: int, __: BudgetRecord, name: str = name, total: int = len(prompts)) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(name, done, total)

        records = await generate_many(engine, prompts, config, on_done=tick)
        lines = []
        for i, (row, record) in enumerate(zip(rows, records)):
            answer_idx = int(row["answer_idx"])
            lines.append(
                {
                    "eval_set": name,
                    "id": row.get("id", str(i)),
                    "answer_idx": answer_idx,
                    "answer_letter": LETTERS[answer_idx],
                    **score_record(record, list(row["options"]), answer_idx),
                    **record.to_dict(),
                }
            )
        with records_path.open("a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        per_set[name] = summarize(lines)

    metrics = {
        "engine": getattr(engine, "name", type(engine).__name__),
        "config": json.loads(json.dumps(asdict(config))),  # tuples as lists, as read back
        "limit": limit,
        "sets": per_set,
        "average_accuracy": sum(s["accuracy"] for s in per_set.values()) / len(per_set) if per_set else 0.0,
        "n": sum(s["n"] for s in per_set.values()),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def run_infer(
    engine: Engine,
    eval_sets: Mapping[str, EvalSource],
    out_dir: str | Path,
    config: BudgetConfig,
    *,
    limit: int | None = None,
    render: Callable[[list[dict[str, str]]], str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """`infer` from synchronous code (the CLI). Takes ownership of `engine`: it is closed at the
    end, inside the same event loop that used it (HTTP clients are bound to their loop)."""

    async def go() -> dict[str, Any]:
        try:
            return await infer(engine, eval_sets, out_dir, config, limit=limit, render=render, progress=progress)
        finally:
            await engine.aclose()

    return asyncio.run(go())
