"""Run budget-controlled generation over eval sets and score it with `m1data.stages.answers` (Table 1).

```python
from m1data.infer.budget import BudgetConfig
from m1data.infer.score import run_infer
metrics = run_infer(engine, {"medqa_test": rows}, "runs/infer/m1-7B-1K",
                    BudgetConfig(model="m1-7B-1K", thinking_budget=4096))
```

Eval sets are Datasets in the m1data row schema (the columns used are ``prompt``, ``options``,
``answer_idx`` and, if present, ``id``), or files read as `m1data infer --eval-sets NAME=FILE` reads
them (`read_eval_sets`: a named set's native file, any eval file, or the rows `m1data load-eval`
wrote). `m1data.infer.jobs` takes what the command line takes (eval set names, the endpoint, the
budget) and calls `run_infer` / `m1data.infer.sweep.run_sweep`; this module is for an engine
built by hand.

The calls go through the LLM stages' runtime (`LLMRuntime`, see `m1data.infer.budget`), with the
reply cache in ``out_dir/llm_cache.sqlite`` unless the runtime names one: a run killed midway and
started again pays for nothing it already received.

Written to `out_dir`:

* ``records.jsonl``: one line per question (eval set, id, gold and predicted letter, how the
  answer was read, correctness, and the whole `BudgetRecord`: thinking, thinking tokens, forcing
  rounds, stop reason, answer, answer_cut), set after set, once every question has its answer; written beside the
  previous run's and renamed onto it, so a kill leaves the previous records and metrics whole.
* ``metrics.json``, once, when every question has its answer: the setting, the label, and per
  set: n (the questions scored), correct, accuracy (correct / n), unscored (and their ids: rows
  whose answer key names no option, e.g. the loaders' ``answer_idx`` -1; they are asked nothing
  and are in no denominator), errors, stop reasons, how each answer was read (``methods``) and
  what it was (``verdicts``: an answer, none, several), answers cut at the answer limit
  (``answers_cut``), mean thinking tokens and forcing rounds; the engine and a digest of the
  prompts as sent (``prompts_fingerprint``, which a sweep compares before reading a point back); a
  fingerprint of each set's rows as scored (``eval_fingerprints``, see `eval_fingerprint`); the
  unweighted mean accuracy over sets, which is how Table 1's "average" is computed; and what the
  calls cost (``calls``: sent now, answered from the cache, tokens), as a stage manifest says it.

A question whose call was refused or broke the token accounting is scored wrong and counted under
``errors``: dropping it would make a flaky endpoint look accurate. A question whose call failed
transiently (timeouts, 5xx, dropped connections, after every retry) has no answer yet: it is not
scored, nothing is written (the previous run's records.jsonl and metrics.json, if any, stay as
they were), and `InferIncomplete` is raised; the same call again sends only what is missing.

The questions of all sets go through the runtime together (one `generate_many`): each step of
budget forcing is then one large batch of calls, which keeps a server's batch full for longer
than set after set would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
from m1data.infer.budget import BudgetConfig, BudgetRecord, build_prompt, generate_many

from m1data.durable import replacing, write_atomic
from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.runner import RunStats, run_sync
from m1data.llm.stages import CACHE_FILENAME, LLMRuntime, llm_stats
from m1data.llm.types import Engine
from m1data.reading.evalsets import EvalInput, load_eval_input, unscorable_keys_taken_out, with_mappings
from m1data.running.pipeline import cache_lock, run_lock
from m1data.schema import LETTERS, column_values
from m1data.stages.answers import grade

__all__ = ["EvalSource", "InferIncomplete", "engine_name", "eval_fingerprint", "has_answer_key", "infer", "load_eval_sets",
           "load_rows", "open_infer_cache", "prompts_fingerprint", "read_eval_sets", "run_infer", "score_record",
           "scored_prompts", "summarize", "write_json"]

log = logging.getLogger(__name__)

EvalSource = datasets.Dataset | str | Path
EvalSets = Mapping[str, EvalSource] | Sequence[str | EvalInput]
REQUIRED = ("prompt", "options", "answer_idx")


class InferIncomplete(RuntimeError):
    """Some questions have no answer yet (transient failures after every retry): nothing of
    theirs is scored, no metrics are written, and running the same command again sends only
    those calls. Like an incomplete build stage, it is not an input error: the CLI exits 1."""

    def __init__(self, where: str, missing: int, total: int):
        super().__init__(
            f"{where}: incomplete: {missing:,} of {total:,} question{'s' if total != 1 else ''} failed transiently "
            "(timeouts, 5xx, dropped connections) after every retry; they are not scored and nothing is written "
            "(a previous run's records.jsonl and metrics.json stay as they were). Run the same command again to send "
            "only what is missing (the cache answers the rest)."
        )
        self.missing, self.total = missing, total


def load_rows(source: EvalSource, name: str = "eval set") -> datasets.Dataset:
    """One eval set as a Dataset: given as one (in the row schema), or read from a file by
    `read_eval_sets` (a named set's file, any eval file, or rows `m1data load-eval` wrote)."""
    if not isinstance(source, datasets.Dataset):
        return read_eval_sets({name: source})[name]
    missing = [c for c in REQUIRED if c not in source.column_names]
    if missing:
        raise UserError(f"eval set {name!r} lacks column(s) {missing}; rows need {list(REQUIRED)} (give a file "
                        "by its path to have it read as `m1data infer --eval-sets` reads it)")
    rows, problems = unscorable_keys_taken_out(source)
    bad = [problem for problem in problems if problem is not None]
    if bad:
        log.warning("eval set %r: %d row(s) unscored, their answer_idx no option's index or contradicted by their "
                    "answer_letter or answer_text; first: %s", name, len(bad), bad[0])
    return rows


def read_eval_sets(
    eval_sets: EvalSets,
    *,
    eval_path: str | Path | None = None,
    mappings: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, datasets.Dataset]:
    """Eval sets by name, read as every door reads them: `m1data infer --eval-sets`, this
    module's `run_infer`, `m1data.infer.jobs` and `decontaminate --eval` (`EvalInput.parse`,
    `with_mappings`, `load_eval_input`).

    `eval_sets` is a list of entries (`NAME`, `FILE`, `NAME=FILE` or `EvalInput`s, as on the
    command line), or a mapping of set name to a Dataset in the row schema (taken as it is) or to a
    file (read as `NAME=FILE`: a known set from its native file, a file of any eval layout, or the
    rows `m1data load-eval` wrote, as they are). `eval_path` is a single named set's file
    (``--eval-path``); `mappings` gives a file's columns by entry name (``--eval-mapping``).

    Each set keeps its questions whose answer key could not be read (`LoadResult.targets`, with
    ``answer_idx`` -1): scoring counts them as unscored in metrics.json, where leaving them out
    (`LoadResult.rows`) reported a set with broken keys as if it were whole. A set name given
    twice is an error: the second silently replaced the first."""
    if isinstance(eval_sets, (str, Path, EvalInput)):  # one entry, not a sequence of its characters
        eval_sets = [eval_sets]
    if isinstance(eval_sets, Mapping):
        specs = [source if isinstance(source, datasets.Dataset) else EvalInput(name, str(source))
                 for name, source in eval_sets.items()]
        names = list(eval_sets)
    else:
        specs = [e if isinstance(e, EvalInput) else EvalInput.parse(str(e)) for e in eval_sets]
        names = [None] * len(specs)
    if not specs:
        raise UserError("no eval set given")
    if eval_path is not None:
        if len(specs) != 1 or not isinstance(specs[0], EvalInput):
            raise UserError("an eval path (--eval-path) goes with exactly one eval set, given by name")
        if specs[0].path is None:
            specs = [EvalInput(specs[0].name, str(eval_path))]
    mapped = iter(with_mappings([s for s in specs if isinstance(s, EvalInput)], dict(mappings or {})))
    sets: dict[str, datasets.Dataset] = {}
    for given_name, spec in zip(names, specs, strict=True):
        if isinstance(spec, datasets.Dataset):
            read = {given_name: load_rows(spec, given_name)}
        else:
            read = {name: loaded.targets() for name, loaded in load_eval_input(next(mapped), scoring=True).items()}
        for name, rows in read.items():
            if name in sets:
                raise UserError(f"eval set {name!r} is given twice; give each set once (NAME=FILE names a file)")
            sets[name] = rows
    return sets


def load_eval_sets(
    eval_sets: EvalSets,
    limit: int | None = None,
    *,
    eval_path: str | Path | None = None,
    mappings: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, datasets.Dataset]:
    """Every set read (and checked) with `read_eval_sets`, cut to its first `limit` rows when given.

    Why the checks: an empty set (or a `limit` below 1) scored 0 of 0 as accuracy 0.0 and pulled
    Table 1's average down with it, and a run with no set at all wrote metrics of nothing; a set
    whose every answer key is unreadable has no accuracy either."""
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1 question per set, got {limit}")
    sets = {}
    for name, rows in read_eval_sets(eval_sets, eval_path=eval_path, mappings=mappings).items():
        rows = rows.select(range(min(limit, len(rows)))) if limit is not None else rows
        if not any(has_answer_key(options, idx)
                   for options, idx in zip(column_values(rows, "options"), column_values(rows, "answer_idx"))):
            raise UserError(f"eval set {name!r} has no question with a usable answer key "
                            f"({len(rows)} row{'s' if len(rows) != 1 else ''}); there is nothing to score")
        sets[name] = rows
    return sets


def has_answer_key(options: list[str], answer_idx: int | None) -> bool:
    """Whether a row's answer key names one of its options. Rows whose key could not be read
    (the eval loaders give them ``answer_idx`` -1, `LoadResult.unscored`) are asked nothing and
    counted as ``unscored``: scoring them wrong would lower the accuracy, dropping them would hide
    that the set is not the one the paper scored."""
    return answer_idx is not None and 0 <= int(answer_idx) < len(options)


def eval_fingerprint(rows: datasets.Dataset) -> str:
    """A digest of what is asked and what is scored: each row's id, prompt, options and answer.
    Why: a sweep reads a finished point back by its metrics.json, and a set that changed under
    the same name (another file, a fixed loader) must not be reported with the old set's scores."""
    digest = hashlib.sha256()
    ids = column_values(rows, "id") if "id" in rows.column_names else [str(i) for i in range(len(rows))]
    columns = (column_values(rows, name) for name in ("prompt", "options", "answer_idx"))
    for key, prompt, options, answer_idx in zip(ids, *columns, strict=True):
        answer = -1 if answer_idx is None else int(answer_idx)
        digest.update(json.dumps([key, prompt, list(options), answer], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def score_record(record: BudgetRecord, options: list[str], answer_idx: int) -> dict[str, Any]:
    """Predicted letter, extraction method and correctness of one generation."""
    if record.stop_reason == "incomplete":
        raise ValueError("an incomplete generation has no answer to score")
    if record.stop_reason == "error":
        return {"predicted": None, "method": "error", "verdict": "no_answer", "correct": False}
    # the model's own answer, without the marker put before it: graded together, the marker's
    # "answer" and an echoed "A. ..." line read as "answer A" (a list of options scored as A; audit)
    result = grade(record.answer, options, answer_idx)
    return {
        "predicted": result.extraction.letter,
        "method": result.extraction.method,
        "verdict": result.extraction.verdict,
        "correct": result.correct,
    }


def summarize(lines: list[dict[str, Any]], unscored_ids: list[str] = ()) -> dict[str, Any]:
    """Per-set metrics of scored record lines (as written to records.jsonl): accuracy is over the
    `n` scored questions; the `unscored` ones (no usable answer key, `has_answer_key`) are counted
    beside them, never in the denominator. A reply whose answer cannot be read (`verdicts`:
    no_answer, multiple_answers) is a question scored wrong, in `n`, as a grader marks a blank."""
    n = len(lines)
    correct = sum(line["correct"] for line in lines)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "unscored": len(unscored_ids),
        "unscored_ids": list(unscored_ids),
        "errors": sum(line["stop_reason"] == "error" for line in lines),
        # answers cut off at answer_max_tokens: scored as far as they went, which may be short of the model's choice
        "answers_cut": sum(bool(line.get("answer_cut")) for line in lines),
        "stop_reasons": dict(Counter(line["stop_reason"] for line in lines)),
        "methods": dict(Counter(line["method"] for line in lines)),
        "verdicts": dict(Counter(line["verdict"] for line in lines)),
        "mean_thinking_tokens": sum(line["thinking_tokens"] for line in lines) / n if n else 0.0,
        "mean_forcing_rounds": sum(line["forcing_rounds"] for line in lines) / n if n else 0.0,
    }


def _with_answer_key(rows: datasets.Dataset) -> tuple[datasets.Dataset, list[str]]:
    """The rows that can be scored, and the ids of those that cannot (`has_answer_key`)."""
    if "id" not in rows.column_names:  # numbered before any is left out, so a question keeps its number
        rows = rows.add_column("id", [str(i) for i in range(len(rows))])
    keep = [has_answer_key(options, idx)
            for options, idx in zip(column_values(rows, "options"), column_values(rows, "answer_idx"))]
    unscored = [str(key) for key, ok in zip(column_values(rows, "id"), keep) if not ok]
    if not unscored:
        return rows, []
    return rows.select([i for i, ok in enumerate(keep) if ok]), unscored


def _scored_lines(name: str, rows: datasets.Dataset, records: list[BudgetRecord]) -> list[dict[str, Any]]:
    """records.jsonl lines of the finished generations (incomplete ones are left out)."""
    lines = []
    for i, (row, record) in enumerate(zip(rows, records, strict=True)):
        if record.stop_reason == "incomplete":
            continue
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
    return lines


async def infer(
    engine: Engine,
    eval_sets: EvalSets,
    out_dir: str | Path,
    config: BudgetConfig,
    *,
    cache: Cache | None = None,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
    render: Callable[[list[dict[str, str]]], str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Generate, score and write one setting over every eval set; returns the metrics.

    `cache` and `runtime` are the LLM stages' (see `m1data.infer.budget.generate_many`).
    `limit` keeps the first N rows of each set (smoke runs). `render` is passed to
    `build_prompt` for models not trained with the Qwen2.5 template. `label` names the model in
    metrics.json (default: `config.model`). Raises `InferIncomplete` when any question is left
    without an answer (module docstring).
    """
    with run_lock(out_dir, "m1data command (infer)"):  # a second run into --out would mix its files with ours
        return await _infer(engine, eval_sets, Path(out_dir), config, cache, runtime, limit, render, label)


def scored_prompts(sets: Mapping[str, datasets.Dataset], render: Callable[[list[dict[str, str]]], str] | None
                   ) -> tuple[dict[str, tuple[datasets.Dataset, list[str]]], list[str]]:
    """Each set's rows that can be scored (with the ids of those that cannot), and the prompts
    they are asked in, in order."""
    asked = {name: _with_answer_key(rows) for name, rows in sets.items()}
    return asked, [build_prompt(p, render) for rows, _ in asked.values() for p in column_values(rows, "prompt")]


def prompts_fingerprint(prompts: Sequence[str]) -> str:
    """A digest of the prompts as sent. Why: a sweep read a finished point back when only the
    chat template had changed (`--tokenizer`), and showed the old template's scores."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def engine_name(engine: Engine) -> str:
    return getattr(engine, "name", type(engine).__name__)


async def _infer(engine: Engine, eval_sets: Mapping[str, EvalSource], out: Path, config: BudgetConfig,
                 cache: Cache | None, runtime: LLMRuntime | None, limit: int | None,
                 render: Callable[[list[dict[str, str]]], str] | None, label: str | None) -> dict[str, Any]:
    sets = load_eval_sets(eval_sets, limit)  # every set read (and checked) before any call
    asked, prompts = scored_prompts(sets, render)
    stats = RunStats()
    records = await generate_many(engine, prompts, config, cache, runtime=runtime, stats=stats, label=out.name)
    per_set: dict[str, Any] = {}
    lines: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for name, (rows, unscored_ids) in asked.items():
        lines[name] = _scored_lines(name, rows, records[start : start + len(rows)])
        start += len(rows)
        per_set[name] = summarize(lines[name], unscored_ids)
    missing = len(records) - sum(s["n"] for s in per_set.values())  # incomplete ones are not scored
    if missing:  # the previous run's records.jsonl and metrics.json stay as they were (the cache keeps these)
        raise InferIncomplete(str(out), missing, len(records))
    # The previous run's files stay, whole, until these records are: written beside them, they
    # replace them in one rename, and the old metrics go just before.
    with replacing(out / "records.jsonl") as partial:
        with partial.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for name in lines for line in lines[name])
        (out / "metrics.json").unlink(missing_ok=True)  # a stale one must not describe these records

    metrics = {
        "label": label or config.model,
        "engine": engine_name(engine),
        "prompts_fingerprint": prompts_fingerprint(prompts),
        "config": json.loads(json.dumps(asdict(config))),  # tuples as lists, as read back
        "limit": limit,
        "sets": per_set,
        "eval_fingerprints": {name: eval_fingerprint(rows) for name, rows in sets.items()},
        "average_accuracy": sum(s["accuracy"] for s in per_set.values()) / len(per_set) if per_set else 0.0,
        "n": sum(s["n"] for s in per_set.values()),
        "unscored": sum(s["unscored"] for s in per_set.values()),
        "calls": llm_stats(stats),
    }
    write_json(out / "metrics.json", metrics)
    cut = sum(s["answers_cut"] for s in per_set.values())
    if cut:
        log.warning(f"{cut:,} answer(s) ran into the answer limit ({config.answer_max_tokens} tokens) and were scored as "
                    "far as they went (answer_cut in records.jsonl); raise --answer-max-tokens to read their end")
    return metrics


def write_json(path: Path, value: Any) -> None:
    """`value` as JSON in `path`, whole or not at all: written to a temporary name beside it,
    flushed to disk and renamed into place. Why: a point's metrics.json is what tells a sweep the
    point is finished, and a kill during a plain write left one cut short that every resume of
    the sweep then died reading."""
    write_atomic(path, json.dumps(value, indent=2) + "\n")


@contextlib.contextmanager
def open_infer_cache(runtime: LLMRuntime | None, out_dir: str | Path) -> Iterator[Cache]:
    """The reply cache of an infer run or sweep: the runtime's `cache_path`, else
    ``out_dir/llm_cache.sqlite`` (beside what it produced, like a build stage's). A cache the
    runtime names is held for the run (`cache_lock`): two runs into other folders sharing it both
    sent, and paid for, the same calls. The folder's own is held with the folder (`run_lock`)."""
    configured = runtime.cache_path if runtime is not None else None
    path = Path(configured) if configured else Path(out_dir) / CACHE_FILENAME
    with cache_lock(path) if configured else contextlib.nullcontext(), Cache(path) as cache:
        yield cache


def run_infer(
    engine: Engine,
    eval_sets: EvalSets,
    out_dir: str | Path,
    config: BudgetConfig,
    *,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
    render: Callable[[list[dict[str, str]]], str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """`infer` from synchronous code (the CLI), with the reply cache `open_infer_cache` names.
    Takes ownership of `engine`: it is closed at the end, inside the same event loop that used it
    (HTTP clients are bound to their loop)."""

    with open_infer_cache(runtime, out_dir) as cache:
        return run_sync(engine, lambda: infer(engine, eval_sets, out_dir, config, cache=cache, runtime=runtime,
                                              limit=limit, render=render, label=label))
