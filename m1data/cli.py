"""The `m1data` command: each command parses its arguments, calls one library function (most of
them `m1data.jobs`), and prints what it returned. Nothing a job needs lives here.

The modules behind the commands load `datasets` and more, which `m1data --help` and the other
commands should not pay for: they are imported when a command first uses them (`_Module`)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import json
import os
import signal
import sys
import threading
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import click
import typer
from rich.markup import escape

from m1data import __version__
from m1data.errors import (
    TERMINATED_EXIT,
    M1DataError,
    StorageError,
    Terminated,
    raise_terminated,
    storage_cause,
    storage_message,
)
from m1data.output import console, enable
from m1data.redact import has_userinfo, redact_environment, without_credentials


class _Module:
    """A module imported when one of its names is first read."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


jobs = _Module("m1data.jobs")
builders = _Module("m1data.builders")
evalsets = _Module("m1data.reading.evalsets")
native = _Module("m1data.reading.native")
funnels = _Module("m1data.running.funnel")
hub = _Module("m1data.publishing.hub")
pipeline = _Module("m1data.running.pipeline")
infer_jobs = _Module("m1data.infer.jobs")
score = _Module("m1data.infer.score")
sweep = _Module("m1data.infer.sweep")
sft = _Module("m1data.train.sft")
difficulty = _Module("m1data.stages.difficulty")
dedup_stages = _Module("m1data.stages.dedup")
traces = _Module("m1data.stages.traces")
mesh = _Module("m1data.stages.mesh")
comparison = _Module("m1data.running.compare")
hf_datasets = _Module("datasets")

# Plain Click help: typer's rich panels print `<bool>` after every flag (typer 0.2x), as if
# `--force` took a value; Click's own layout shows flags as switches (`--force / --no-force`).
HELP_MODE = None
# An internal error's traceback without local variables: older typer releases that pyproject allows
# (typer>=0.15) print them by default, and the HTTP clients' frames hold the Hub token in `headers`.
app = typer.Typer(help="Build, check and publish the m1 medical reasoning datasets.", no_args_is_help=True,
                  rich_markup_mode=HELP_MODE, pretty_exceptions_show_locals=False)

OutOpt = Annotated[Path, typer.Option("--out", help="Output file (.parquet or .jsonl).")]
OutArg = Annotated[Path, typer.Argument(help="Kept rows out; the rows not kept go beside it as OUT.dropped.<ext>, with their reasons.")]
PathOpt = Annotated[Optional[Path], typer.Option("--path", help="Local file in the native format (default: the Hub id m1 used).")]
SourcePathOpt = Annotated[Optional[Path], typer.Option("--path", help=(
    "Local file in the native format (.gz, .bz2, .xz, .zst too), or a folder of its files (a Hub snapshot's "
    "train-00000-of-00004.parquet ...); default: the Hub id m1 used."))]


def _error_line(err: BaseException) -> None:
    """The one line a user's error is. Its text passes `redact_environment` as a last guard: every
    writer masks the key it holds, but a message that quotes a value as given (a path, a config
    value, a server's words) may hold a key nobody told it of (HF_TOKEN, any *_API_KEY); one pass
    over the environment per error costs nothing that matters."""
    console.print(f"[red]error:[/red] {escape(redact_environment(str(err)))}", soft_wrap=True)  # [brackets] are text


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """m1data's own errors as one line and exit code 2 (as `main` does), for commands whose
    callers (scripts, CliRunner) read the exit code rather than the exception."""
    try:
        yield
    except M1DataError as err:
        _error_line(err)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _exit_1_when_locked() -> Iterator[None]:
    """Another build (or infer run, sweep, training run) holds the folder: say so, exit 1 (try again later, or another --out)."""
    try:
        yield
    except pipeline.RunLocked as err:
        _error_line(err)
        raise typer.Exit(1) from None


def _print_loaded(files: list) -> None:
    for loaded in files:
        for warning in loaded.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        unscored = f" ({loaded.unscored:,} of them unscored: no usable key, still decontamination targets)" \
            if loaded.unscored else ""
        console.print(f"{loaded.name}: {loaded.rows:,} rows{unscored} -> {loaded.path}")
        if loaded.dropped:
            reasons = ", ".join(f"{r} {n}" for r, n in loaded.reasons.items())
            console.print(f"{loaded.name}: {loaded.dropped:,} dropped ({reasons}) -> {loaded.dropped_path}")
        for why, count in loaded.out_of_scope.items():
            console.print(f"{loaded.name}: {count:,} left out ({why})")


def _mapping(spec: str | None, option: str = "--mapping") -> dict | None:
    """`question=COL,options=COL,answer=COL[,id=COL][,context=COL]`; several option columns are
    joined with `+` (`options=opa+opb+opc+opd`). `option`: the option it was given in, for the error."""
    if spec is None:
        return None
    mapping: dict = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, eq, column = part.partition("=")
        if not eq or not key.strip() or not column.strip():
            raise typer.BadParameter(f"expected KEY=COLUMN, got {part!r}", param_hint=option)
        mapping[key.strip()] = column.strip()  # `opa+opb`: the columns `ColumnMapping` joins, at every door
    return mapping


EvalMappingOpt = Annotated[Optional[list[str]], typer.Option(
    "--eval-mapping", metavar="NAME:MAPPING",
    help="Columns of an eval file the guesses do not read: NAME:question=COL,options=COL,answer=COL (as `--mapping` "
         "of `m1data load-eval`; NAME as in NAME=FILE, or the stem of a file given alone; a named set's file may "
         "say only NAME:answer_kind=KIND); repeatable.")]


def _eval_mappings(specs: list[str] | None) -> dict[str, dict]:
    """Entry name -> mapping, from `--eval-mapping NAME:KEY=COL,...` options (the columns read by `_mapping`)."""
    mappings: dict[str, dict] = {}
    for spec in specs or []:
        name, colon, columns = spec.partition(":")
        name = name.strip()
        mapping = _mapping(columns, "--eval-mapping") if colon and name and "=" not in name else None
        if not mapping:
            raise typer.BadParameter(f"expected NAME:question=COL,options=COL,answer=COL, got {spec!r}",
                                     param_hint="--eval-mapping")
        if name in mappings:
            raise typer.BadParameter(f"{name!r} is given twice", param_hint="--eval-mapping")
        mappings[name] = mapping
    return mappings


@app.command()
def load(
    source: Annotated[str, typer.Argument(help="medqa, headqa, medmcqa, pubmedqa, or a name of your choosing for a "
                                               "file read through --mapping")],
    out: OutOpt,
    path: SourcePathOpt = None,
    split: Annotated[Optional[str], typer.Option(help="Split (PubMedQA: train = the 500-PMID pool, test, all; a "
                                                      "folder of several splits' files: which to read).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the per-row option shuffle.")] = 42,
    cop_base: Annotated[Optional[int], typer.Option(
        "--cop-base", help="MedMCQA: a local file's cop counts from 0 (Hub) or 1 (original release); "
                           "needed only when the file's values cannot tell.")] = None,
    mapping: Annotated[Optional[str], typer.Option(
        "--mapping", help="Columns of a file m1data has no loader for: question=COL,options=COL,answer=COL "
                          "(options may be several columns joined by +; optional id=COL, context=COL, and "
                          "answer_kind=text|letter|index0|index1 when the file cannot tell).")] = None,
) -> None:
    """Load one raw source into the m1data row schema."""
    with _user_errors(), _data_warnings_as_lines():
        loaded = jobs.load_source_to_file(source, out, path, split=split, seed=seed, cop_base=cop_base,
                                          mapping=_mapping(mapping))
    _print_loaded([loaded])


@app.command("load-eval")
def load_eval(
    name: Annotated[str, typer.Argument(help="An eval-set name (see `m1data eval-sets`), mmlu_medical, or a file.")],
    out: OutOpt,
    path: PathOpt = None,
    mapping: Annotated[Optional[str], typer.Option(
        "--mapping", help="Columns of an eval file the guesses do not read: question=COL,options=COL,answer=COL "
                          "(as for `m1data load`; answer_kind=text|letter|index0|index1 when the file cannot "
                          "tell).")] = None,
) -> None:
    """Load an eval set (a decontamination target and scoring set)."""
    with _user_errors(), _data_warnings_as_lines():
        loaded = jobs.load_eval_to_file(name, out, path, mapping=_mapping(mapping))
    _print_loaded(loaded)


@app.command("eval-sets")
def eval_sets() -> None:
    """List the eval sets m1data knows by name."""
    for name in evalsets.EVAL_SETS:
        typer.echo(name)


def _expand_home(value: Any) -> Any:
    """`~` in a path argument, as the shell would have expanded it: it does not after `=`
    (`--out=~/runs/m1k`) or in quotes, and then the readers expanded it while the writers did
    not (a folder made under HOME, then a raw errno for the literal `~/...`)."""
    if isinstance(value, Path):
        return value.expanduser()
    if isinstance(value, str):
        return os.path.expanduser(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_expand_home(v) for v in value)
    return value


@functools.cache
def _path_parameters(command: Callable[..., Any]) -> frozenset[str]:
    """The parameters of a command function annotated as paths (`Path`, `Optional[Path]`,
    `list[Path]`). Why from the annotations: older typer (0.16) hands a command its `Path`
    arguments as strings until the call, and the parameter objects differ between versions."""
    def names_a_path(hint: Any) -> bool:
        return hint is Path or any(names_a_path(arg) for arg in typing.get_args(hint))

    hints = typing.get_type_hints(inspect.unwrap(command))
    return frozenset(name for name, hint in hints.items() if name != "return" and names_a_path(hint))


class _Command(typer.core.TyperCommand):
    """Every m1data command: its path arguments with `~` expanded (`_expand_home`)."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        paths = _path_parameters(self.callback)
        ctx.params = {name: _expand_home(value) if name in paths else value for name, value in ctx.params.items()}
        return super().invoke(ctx)


class _BuildCommand(_Command):
    """`build`'s help names the datasets from the builder table (m1data.builders.BUILDERS), read
    when the help is shown: importing the table loads `datasets` (about a second), which the other
    commands and `m1data --help` should not pay."""

    def format_help(self, ctx, formatter) -> None:  # type: ignore[no-untyped-def]
        for param in self.params:
            if param.name == "dataset":
                param.help = f"The dataset to build: {', '.join(builders.BUILDERS)}."
        super().format_help(ctx, formatter)


@app.command(cls=_BuildCommand)
def build(
    dataset: Annotated[str, typer.Argument(help="The dataset to build (the list: m1data build --help).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (stage outputs and manifests).")],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML overriding the builder's (paper) defaults, or a shipped one by name (paper, embedded); none: embedded.")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Re-run from this stage on.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Stop after this stage.")] = None,
    force: Annotated[bool, typer.Option(help="Re-run every stage even when its manifest matches.")] = False,
    from_m23k: Annotated[Optional[str], typer.Option("--from-m23k", help="Sample from an existing m23K (folder, file or repo id).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="With --from-m23k: the draw's seed (default: the config's, 42).")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="With --from-m23k: rows to draw (default: the config's, 1000).")] = None,
    repo_id: Annotated[Optional[str], typer.Option("--repo-id", help="Repo id the card should name (for publishing later).")] = None,
    hub_config: Annotated[Optional[str], typer.Option("--hub-config", help="Config name in the Hub folder (default: the dataset's name, e.g. m1k).")] = None,
    executor: Annotated[Optional[str], typer.Option("--executor", help="local (default) or ray; overrides `executor:` in the config.")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster: auto, ray://host:10001 (default: start one here).")] = None,
    hub_out: Annotated[Optional[Path], typer.Option("--hub-out", help="Hub-layout folder to write (default: RUN_DIR/hub).")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Exit 0 when the build stops early (an endpoint not up, transient failures left).")] = False,
) -> None:
    """Build a dataset: run its stages under RUN_DIR, skipping completed ones, then write the
    Hub-layout folder RUN_DIR/hub (parquet, card, images) that `m1data publish` uploads. A build
    that stops early exits 1 unless --allow-partial: scripts must not take it for done."""
    with _user_errors(), _exit_1_when_locked(), _data_warnings_as_lines():
        if from_m23k is None and (seed is not None or n is not None):
            raise typer.BadParameter("--seed and --n go with --from-m23k (a build takes them from its config's "
                                     "sample: block)", param_hint="--seed/--n")
        if from_m23k is None:
            result = jobs.build(dataset, out, config=config, executor=executor, ray_address=ray_address, start=start,
                                until=until, force=force, hub_out=hub_out, repo_id=repo_id, hub_config=hub_config)
        elif dataset != "m1k" or start or until or executor or ray_address:
            raise typer.BadParameter("--from-m23k goes with m1k, without --from, --until, --executor or --ray-address",
                                     param_hint="--from-m23k")
        else:
            result = jobs.resample(from_m23k, out, seed=seed, n=n, config=config, force=force, hub_out=hub_out,
                                   repo_id=repo_id, hub_config=hub_config)
    if result.funnel:
        typer.echo(result.funnel)
    if result.status == "not_ready":
        console.print(f"[yellow]{escape(result.reason)}[/yellow]\nThe stages before it are complete in {out}; configure the "
                      "endpoint (see README, --config) and run the same command again to continue.", soft_wrap=True)
    elif result.status == "incomplete":
        console.print(f"[red]{escape(result.reason)}[/red]", soft_wrap=True)
    elif result.hub_folder is not None:
        console.print(f"Hub-layout folder: {result.hub_folder} "
                      f"(load it with datasets.load_dataset({str(result.hub_folder)!r}))")
    elif result.reason:
        console.print(f"[yellow]{escape(result.reason)}[/yellow]", soft_wrap=True)
    if result.stopped_early and not allow_partial:
        raise typer.Exit(1)


@app.command()
def funnel(run_dir: Annotated[Path, typer.Argument(help="A run directory made by `m1data build`.")]) -> None:
    """Print the per-source, per-stage funnel of a run (paper Table 3 shape, markdown)."""
    typer.echo(funnels.funnel_markdown(run_dir))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="A run directory made by `m1data build`.")],
    run_b: Annotated[Path, typer.Argument(help="Another run directory (e.g. the same build with a new teacher).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for compare.md and compare.png (default: print the report, no figure).")] = None,
    stage: Annotated[str, typer.Option("--stage", help="The stage whose rows are compared.")] = "traces",
) -> None:
    """Compare two builds: per-source yield, overlap, answer agreement, reasoning length, cost."""
    report = comparison.compare_runs(run_a, run_b, stage=stage, out_dir=out)
    if out is None:
        typer.echo(report.markdown)
    elif report.figure is None:  # matplotlib is not installed (the `cards` extra)
        typer.echo(f"wrote {out / comparison.REPORT_FILE}; no figure: matplotlib is not installed "
                   "(pip install 'm1data[cards]')")
    else:
        typer.echo(f"wrote {out / comparison.REPORT_FILE} and {out / comparison.FIGURE_FILE}")


@app.command()
def lineage(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    row_id: Annotated[str, typer.Argument(help="A row id, e.g. medmcqa:<uuid> or headqa:<exam>:<qid>.")],
) -> None:
    """Follow one row through the stages of a run: where it was kept, where and why it was dropped."""
    history = funnels.lineage(run_dir, row_id)
    if not history:
        raise typer.BadParameter(f"no row {row_id!r} in {run_dir}", param_hint="ROW_ID")
    for step in history:
        typer.echo(json.dumps(step, ensure_ascii=False))


ExecutorOpt = Annotated[str, typer.Option(
    "--executor", help="local, or ray: the fuzzy matcher's length bands as Ray tasks, as in `build` (same output).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray cluster: auto, ray://host:10001 (default: start one here).")]


PRINTED_ITEMS = 20  # of a list in a file command's statistics; all of them are in OUT.stats.json


def _print_stats(stats: dict, out_path: Path | None = None) -> None:
    """The statistics as JSON. A file command (`out_path`) wrote them all to OUT.stats.json, so its
    lists are cut to their first PRINTED_ITEMS here: decontaminating 1M benchmark rows listed
    1,880 n-gram-only rows, 200 KB of terminal."""
    if stats:
        shown = stats if out_path is None else _cut_lists(stats, str(pipeline.stats_path(out_path)))
        typer.echo(json.dumps(shown, indent=2, default=str))


def _cut_lists(value: Any, where: str) -> Any:
    """`value` with every list longer than PRINTED_ITEMS cut, and a last item saying where the rest are."""
    if isinstance(value, dict):
        return {k: _cut_lists(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        head = [_cut_lists(v, where) for v in value[:PRINTED_ITEMS]]
        rest = len(value) - len(head)
        return head + ([f"... and {rest:,} more in {where}"] if rest else [])
    return value


def _print_llm_stats(stats: dict, out_path: Path) -> None:
    """An LLM file run whose requests failed transiently wrote OUT and its dropped file (a warning
    said how many, and that the same command sends exactly those): exit 1, as a build that stops
    incomplete, so a script does not take it for finished."""
    _print_stats(stats, out_path)
    if stats.get("transient_failures"):
        raise typer.Exit(1)


@app.command()
def dedup(
    in_path: Annotated[Path, typer.Argument(help="Rows in (.parquet, .jsonl or .json).")],
    out_path: OutArg,
    column: Annotated[Optional[str], typer.Option("--column", help="Column to compare (default: question stem + option set).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="rapidfuzz fuzz.ratio at or above which rows match.")] = 95.0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Fuzzy deduplication: a row goes when an earlier row matches it (exact all-pairs answer)."""
    _print_stats(jobs.run_dedup_file(in_path, out_path, threshold=threshold, column=column, executor=executor,
                                     ray_address=ray_address), out_path)


@app.command()
def decontaminate(
    in_path: Annotated[Path, typer.Argument(help="Rows in (.parquet, .jsonl or .json).")],
    out_path: OutArg,
    eval_names: Annotated[list[str], typer.Option("--eval", help="NAME, NAME=LOCAL_FILE (see `m1data eval-sets`), or a file of any known shape; repeatable.")],
    threshold: Annotated[float, typer.Option("--threshold")] = 95.0,
    ngram: Annotated[int, typer.Option("--ngram", min=0, help="Word n-gram size of the second check; 0 turns it off.")] = 8,
    ngram_max_train_rows: Annotated[Optional[int], typer.Option("--ngram-max-train-rows", help="N-grams in more training rows than this are boilerplate, never held (default 3).")] = None,
    ngram_min_share: Annotated[Optional[float], typer.Option("--ngram-min-share", help="The share of one eval question's n-grams a row must hold to be flagged (default 0.3).")] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    eval_mapping: EvalMappingOpt = None,
) -> None:
    """Remove rows that match any eval item (question stem + option set, fuzzy ratio >= threshold; or the
    stem alone with most of the options shared)."""
    with _user_errors():
        evals = evalsets.with_mappings([evalsets.EvalInput.parse(e) for e in eval_names], _eval_mappings(eval_mapping))
    with _data_warnings_as_lines():
        stats = jobs.run_decontaminate_file(in_path, out_path, evals, threshold=threshold, ngram=ngram,
                                            ngram_max_train_rows=ngram_max_train_rows, ngram_min_share=ngram_min_share,
                                            executor=executor, ray_address=ray_address)
    _print_stats(stats, out_path)


def _data_warnings_as_lines() -> contextlib.AbstractContextManager[None]:
    """What a user's data makes m1data warn about, as one line each (the modules load on first use)."""
    return _warnings_as_lines(native.CopBaseWarning, dedup_stages.UnscoredEvalWarning, evalsets.UnmatchedEvalWarning)


@contextlib.contextmanager
def _warnings_as_lines(*categories: type[Warning]) -> Iterator[None]:
    """Show warnings of `categories` as one `warning: ...` line each (not Python's file:line form),
    each as it comes: a build or an inference run wrapped in this still warns before its end."""
    with warnings.catch_warnings():
        for category in categories:
            warnings.simplefilter("always", category)
        show_other = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            if issubclass(category, categories):
                console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", soft_wrap=True)
            else:
                show_other(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


run_app = typer.Typer(help="Run one LLM stage over a file of rows.", no_args_is_help=True, rich_markup_mode=HELP_MODE)
app.add_typer(run_app, name="run")

InArg = Annotated[Path, typer.Argument(help="Rows in (.parquet, .jsonl or .json).")]
InsArg = Annotated[
    list[Path],
    typer.Argument(help="Rows in: .parquet/.jsonl/.json files, or folders of .parquet/.jsonl files, read as one."),
]
KeyEnvOpt = Annotated[Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key.")]

# The flags every `run` command of an LLM stage takes; each sets the LLMRuntime field of its name,
# and one left unset keeps the stage's own default (`jobs.stage_runtime`).
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="SQLite reply cache (default: OUT.llm_cache.sqlite).")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once (default 32).")]
RpmOpt = Annotated[Optional[float], typer.Option("--rpm", help="Requests-per-minute limit.")]
TpmOpt = Annotated[Optional[float], typer.Option("--tpm", help="Tokens-per-minute limit.")]
TimeoutOpt = Annotated[Optional[float], typer.Option("--timeout", help="Seconds one attempt may take (default 600; traces 1200: R1 may think for minutes).")]
RequestAttemptsOpt = Annotated[Optional[int], typer.Option("--request-attempts", min=1, help="Failed tries per request before it is recorded as failed (default 6); 429s with a Retry-After count separately (up to 20).")]
RetryFailedOpt = Annotated[bool, typer.Option("--retry-failed", help="Send again requests whose recorded outcome was a failure.")]
BatchOpt = Annotated[bool, typer.Option("--batch", help="Send through the provider's Batch API (cheaper, answered within a day); same cache, resumable.")]
PricesOpt = Annotated[Optional[Path], typer.Option("--prices", help='JSON price table, {"MODEL": {"input": 0.28, "output": 0.42}} in dollars per 1M tokens, for models the built-in one does not know.')]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print requests, cached replies, tokens and cost; call nothing.")]
StageConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="A build config (YAML file, or a shipped one: embedded, paper) whose settings for this stage to start from, as `build` sends them; the flags given replace them.")]


@run_app.command("difficulty")
def run_difficulty(
    in_paths: InsArg,
    out_path: OutArg,
    student: Annotated[Optional[list[str]], typer.Option("--student", help="[SHORT=]MODEL=BASE_URL; repeat for each student. SHORT names its columns (student_SHORT_*) as a config's `short` does; default: the model's name. None given: the config's students, else the paper's.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Default 4000.")] = None,
    drop_rule: Annotated[Optional[str], typer.Option("--drop-rule", help="any | all | none: drop when any/all students are right (default any).")] = None,
    api_key_env: KeyEnvOpt = None, config: StageConfigOpt = None,
    cache: CacheOpt = None, concurrency: ConcurrencyOpt = None, rpm: RpmOpt = None, tpm: TpmOpt = None,
    timeout: TimeoutOpt = None, request_attempts: RequestAttemptsOpt = None, retry_failed: RetryFailedOpt = False,
    batch: BatchOpt = False, prices: PricesOpt = None, dry_run: DryRunOpt = False,
) -> None:
    """Keep only the questions the student models get wrong (paper: Qwen2.5-7B/32B-Instruct)."""
    settings = None if config is None else jobs.stage_settings("difficulty", config)
    students = None if student is None else []
    for spec in student or ():
        try:
            students.append(difficulty.student_from_spec(spec, api_key_env))
        except ValueError as err:  # shown without credentials: the URL alone may carry them
            shown = without_credentials(spec) if has_userinfo(spec) else spec
            raise typer.BadParameter(f"{err}, got {shown!r}", param_hint="--student") from None
    runtime = jobs.stage_runtime(settings or difficulty.DifficultyConfig, cache_path=cache, concurrency=concurrency,
                                 rpm=rpm, tpm=tpm, timeout=timeout, request_attempts=request_attempts,
                                 retry_failed=retry_failed, batch=batch, prices_file=prices)
    _print_llm_stats(jobs.run_difficulty_file(in_paths, out_path, students, max_tokens=max_tokens, drop_rule=drop_rule,
                                              api_key_env=api_key_env, runtime=runtime, dry_run=dry_run,
                                              settings=settings), out_path)


@run_app.command("traces")
def run_traces(
    in_paths: InsArg,
    out_path: OutArg,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible endpoint of the teacher (default: the config's, else DeepSeek's API).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Teacher model (default: the config's, else deepseek-reasoner).")] = None,
    api_key_env: KeyEnvOpt = None, config: StageConfigOpt = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Default 8000.")] = None,
    require_reasoning: Annotated[Optional[bool], typer.Option(
        "--require-reasoning/--no-require-reasoning",
        help="Stop after a 3-request preflight when none of its answers has reasoning (default on).")] = None,
    attempts: Annotated[Optional[int], typer.Option(
        "--attempts", min=1, help="Tries per question: one failing verification is asked again (default 1: the paper).")] = None,
    keep: Annotated[Optional[str], typer.Option(
        "--keep", help="first | shortest | all: which verified try becomes the row (default first).")] = None,
    retry_truncated: Annotated[Optional[bool], typer.Option(
        "--retry-truncated/--no-retry-truncated",
        help="Ask a truncated reply's question again (never at temperature 0; default on).")] = None,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", help="Sampling temperature (default: the provider's).")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", help="Seed sent with each request; try k sends SEED + k - 1.")] = None,
    cache: CacheOpt = None, concurrency: ConcurrencyOpt = None, rpm: RpmOpt = None, tpm: TpmOpt = None,
    timeout: TimeoutOpt = None, request_attempts: RequestAttemptsOpt = None, retry_failed: RetryFailedOpt = False,
    batch: BatchOpt = False, prices: PricesOpt = None, dry_run: DryRunOpt = False,
) -> None:
    """Have a reasoning teacher write a chain of thought and answer; keep verified-correct rows."""
    settings = None if config is None else jobs.stage_settings("traces", config)
    runtime = jobs.stage_runtime(settings or traces.TracesConfig, cache_path=cache, concurrency=concurrency, rpm=rpm,
                                 tpm=tpm, timeout=timeout, request_attempts=request_attempts, retry_failed=retry_failed,
                                 batch=batch, prices_file=prices)
    _print_llm_stats(jobs.run_traces_file(in_paths, out_path, base_url, model, api_key_env, max_tokens=max_tokens,
                                          require_reasoning=require_reasoning, runtime=runtime, dry_run=dry_run,
                                          attempts=attempts, keep=keep, retry_truncated=retry_truncated,
                                          temperature=temperature, seed=seed, settings=settings), out_path)


@run_app.command("tag")
def run_tag(
    in_paths: InsArg,
    out_path: OutArg,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible endpoint (default: the config's, else OpenAI's API).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Default: the config's, else gpt-4o.")] = None,
    api_key_env: KeyEnvOpt = None, config: StageConfigOpt = None,  # no key: OPENAI_API_KEY on OpenAI's API only
    max_attempts: Annotated[Optional[int], typer.Option("--max-attempts", help="Asks per row before it is recorded untagged (default 3).")] = None,
    cache: CacheOpt = None, concurrency: ConcurrencyOpt = None, rpm: RpmOpt = None, tpm: TpmOpt = None,
    timeout: TimeoutOpt = None, request_attempts: RequestAttemptsOpt = None, retry_failed: RetryFailedOpt = False,
    batch: BatchOpt = False, prices: PricesOpt = None, dry_run: DryRunOpt = False,
) -> None:
    """Tag each row with one of the 76 MeSH qualifiers by asking an LLM (m1 used GPT-4o)."""
    settings = None if config is None else jobs.stage_settings("tag", config)
    runtime = jobs.stage_runtime(settings or mesh.MeshConfig, cache_path=cache, concurrency=concurrency, rpm=rpm,
                                 tpm=tpm, timeout=timeout, request_attempts=request_attempts, retry_failed=retry_failed,
                                 batch=batch, prices_file=prices)
    _print_llm_stats(jobs.run_tag_file(in_paths, out_path, base_url=base_url, model=model, api_key_env=api_key_env,
                                       max_attempts=max_attempts, runtime=runtime, dry_run=dry_run, settings=settings),
                     out_path)


@run_app.command("tag-offline")
def run_tag_offline(
    in_path: InArg,
    out_path: OutArg,
    model_path: Annotated[Optional[Path], typer.Option("--model-path", help="A tagger from `m1data run train-tagger` (default: zero-shot).")] = None,
) -> None:
    """Tag rows with MeSH qualifiers without an LLM (sentence embeddings, zero-shot or trained)."""
    _print_stats(jobs.run_tag_offline_file(in_path, out_path, model_path), out_path)


@run_app.command("train-tagger")
def run_train_tagger(
    labels: Annotated[Path, typer.Argument(help="Rows with a domain_code column (e.g. LLM-tagged).")],
    model_path: Annotated[Path, typer.Argument(help="Where to save the trained tagger.")],
) -> None:
    """Train the offline tagger on LLM-tagged rows (TF-IDF + logistic regression)."""
    jobs.train_offline_file(labels, model_path)
    console.print(f"tagger saved to {model_path}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Option("--recipe", help="m1-7B-1K, m1-7B-23K, m1-32B-1K or a recipe YAML.")],
) -> None:
    """SFT with TRL on an m1 dataset: --dataset (required) names it, a build's Hub folder or a Hub repo id; any
    further --flag overrides the recipe (--model_name_or_path, --dataset_config, or TRL's SFTConfig names)."""
    with _exit_1_when_locked():  # another training run holds --output_dir
        sft.main(sft.parse_cli(["--recipe", recipe, *ctx.args]))


infer_app = typer.Typer(help="Budget-controlled generation and scoring on eval sets.", no_args_is_help=True,
                        rich_markup_mode=HELP_MODE)
app.add_typer(infer_app, name="infer")

EngineOpt = Annotated[str, typer.Option("--engine", help="http (an OpenAI-compatible completions server), hf or vllm.")]
ModelOpt = Annotated[str, typer.Option("--model", help="Model name on the server, or a local model folder (hf, vllm).")]
EvalOpt = Annotated[list[str], typer.Option(
    "--eval-sets", help="NAME, NAME=FILE (a name of your choosing for a file, or a known set read from FILE), or a "
    "file; comma-separated or repeated (`m1data eval-sets` lists the names).")]
EvalPathOpt = Annotated[Optional[Path], typer.Option("--eval-path", help="Local file for a single named eval set.")]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="Server URL for --engine http (ends in /v1).")]
ApiKeyEnvOpt = Annotated[Optional[str], typer.Option(
    "--api-key-env", help="Environment variable holding the API key of an --engine http server (never written).")]
TokenizerOpt = Annotated[Optional[str], typer.Option(
    "--tokenizer", help="Tokenizer (Hub id or folder) whose chat template gives the stop tokens; default: --model.")]
LabelOpt = Annotated[Optional[str], typer.Option(
    "--label", help="Name of this model in metrics, sweep.json and plots (default: the last part of --model).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]


def _eval_entries(specs: list[str]) -> list[str]:
    """`--eval-sets` entries, comma-separated or repeated, as a list."""
    return [e.strip() for spec in specs for e in spec.split(",") if e.strip()]


def _incomplete(stop: Exception) -> NoReturn:
    """Transient failures left questions unanswered: a red message and exit 1, as a build that
    stops incomplete (the re-run sends only those)."""
    console.print(f"[red]{stop}[/red]", soft_wrap=True)
    raise typer.Exit(1)


InferCacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache", help="SQLite reply cache (default: OUT/llm_cache.sqlite); a re-run sends only what it lacks.")]
InferConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")]
InferRpmOpt = Annotated[Optional[float], typer.Option("--rpm", help="Requests-per-minute limit.")]
InferTpmOpt = Annotated[Optional[float], typer.Option("--tpm", help="Tokens-per-minute limit.")]
InferTimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds one attempt may take.")]


@infer_app.command("run")
def infer_run(
    out: Annotated[Path, typer.Option("--out", help="Folder for records.jsonl, metrics.json and the reply cache.")],
    model: ModelOpt,
    eval_names: EvalOpt,
    engine: EngineOpt = "http",
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    tokenizer: TokenizerOpt = None,
    label: LabelOpt = None,
    eval_path: EvalPathOpt = None,
    eval_mapping: EvalMappingOpt = None,
    budget: Annotated[int, typer.Option("--budget", help="Thinking budget in tokens.")] = 4096,
    forcing_rounds: Annotated[int, typer.Option("--forcing-rounds", help="Times to append the forcing string.")] = 0,
    forcing_string: Annotated[str, typer.Option("--forcing-string")] = "Wait",
    answer_max_tokens: Annotated[int, typer.Option("--answer-max-tokens")] = 1024,
    concurrency: InferConcurrencyOpt = 16,
    rpm: InferRpmOpt = None,
    tpm: InferTpmOpt = None,
    timeout: InferTimeoutOpt = 600.0,
    cache: InferCacheOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N questions of each set.")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Generate with a thinking budget (and optional budget forcing) and score per eval set."""
    try:
        with _user_errors(), _exit_1_when_locked(), _data_warnings_as_lines():
            metrics = infer_jobs.infer_run(
                model, _eval_entries(eval_names), out, engine=engine, base_url=base_url, api_key_env=api_key_env,
                tokenizer=tokenizer, label=label, eval_path=eval_path, eval_mappings=_eval_mappings(eval_mapping),
                budget=budget, forcing_rounds=forcing_rounds, forcing_string=forcing_string,
                answer_max_tokens=answer_max_tokens, limit=limit,
                runtime=infer_jobs.infer_runtime(cache=cache, concurrency=concurrency, rpm=rpm, tpm=tpm,
                                                 timeout=timeout, progress=progress))
    except score.InferIncomplete as stop:
        _incomplete(stop)
    _print_stats(metrics)


@infer_app.command("sweep")
def infer_sweep(
    out: Annotated[Path, typer.Option("--out", help="Folder for one run per point, sweep.json, the plots and the reply cache.")],
    model: ModelOpt,
    eval_names: EvalOpt,
    engine: EngineOpt = "http",
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    tokenizer: TokenizerOpt = None,
    label: LabelOpt = None,
    eval_path: EvalPathOpt = None,
    eval_mapping: EvalMappingOpt = None,
    budgets: Annotated[str, typer.Option("--budgets", help="Comma-separated thinking budgets.")] = "512,1024,2048,4096,8192",
    forcing_rounds: Annotated[str, typer.Option("--forcing-rounds", help="Comma-separated forcing rounds.")] = "0",
    forcing_string: Annotated[str, typer.Option("--forcing-string")] = "Wait",
    answer_max_tokens: Annotated[int, typer.Option("--answer-max-tokens")] = 1024,
    concurrency: InferConcurrencyOpt = 16,
    rpm: InferRpmOpt = None,
    tpm: InferTpmOpt = None,
    timeout: InferTimeoutOpt = 600.0,
    cache: InferCacheOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N questions of each set.")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Accuracy against thinking budget (paper Figure 1) and forcing rounds (Figure 3), with plots."""
    grid = {}
    for name, spec in (("--budgets", budgets), ("--forcing-rounds", forcing_rounds)):
        try:
            grid[name] = [int(v) for v in spec.split(",")]
        except ValueError:
            raise typer.BadParameter(f"expected comma-separated whole numbers, got {spec!r}", param_hint=name) from None
    try:
        with _user_errors(), _exit_1_when_locked(), _data_warnings_as_lines():
            points = infer_jobs.infer_sweep(
                model, _eval_entries(eval_names), out, engine=engine, base_url=base_url, api_key_env=api_key_env,
                tokenizer=tokenizer, label=label, eval_path=eval_path, eval_mappings=_eval_mappings(eval_mapping),
                budgets=grid["--budgets"], forcing_rounds=grid["--forcing-rounds"], forcing_string=forcing_string,
                answer_max_tokens=answer_max_tokens, limit=limit,
                runtime=infer_jobs.infer_runtime(cache=cache, concurrency=concurrency, rpm=rpm, tpm=tpm,
                                                 timeout=timeout, progress=progress))
    except score.InferIncomplete as stop:
        _incomplete(stop)
    _print_stats({"points": points})


@infer_app.command("plot")
def infer_plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Folders of `m1data infer sweep` or `infer run`, one per model.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the plots.")],
    labels: Annotated[Optional[list[str]], typer.Option("--label", help="Legend name per RUN_DIR, in order; repeatable.")] = None,
) -> None:
    """Overlay several models' sweeps in the paper's Figures 1 and 3."""
    if labels and len(labels) != len(run_dirs):
        raise typer.BadParameter(f"{len(labels)} labels for {len(run_dirs)} run folders", param_hint="--label")
    points = [p for i, run in enumerate(run_dirs) for p in sweep.load_points(run, labels[i] if labels else None)]
    written = sweep.plot_sweep(points, out)
    if not written:
        console.print("nothing to plot: every point has the same budget and the same forcing rounds")
    for path in written:
        typer.echo(str(path))


@app.command()
def publish(
    folder: Annotated[Path, typer.Argument(help="A Hub-layout folder written by a build.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="e.g. my-org/m1K")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan: the repo is read (when it can be) to show what would be replaced; "
                          "nothing is sent.")] = False,
) -> None:
    """Upload a Hub folder in one commit, merging with the configs already on the repo.

    The token comes from HF_TOKEN or the saved `hf auth login`; it is never written anywhere."""
    with _user_errors():
        plan = hub.publish(folder, repo_id, private=private, dry_run=dry_run)
    typer.echo(plan.describe())


for _info in (*app.registered_commands, *run_app.registered_commands, *infer_app.registered_commands):
    if not issubclass(_info.cls, _Command):  # typer's default is its plain TyperCommand
        _info.cls = _Command  # `~` in paths expanded on every command (`_Command`)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"m1data {__version__}")
        raise typer.Exit()


@app.callback()
def _quiet_datasets(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the m1data version and exit.")] = False,
) -> None:
    """m1data's messages and progress bars on (a library call keeps them off); datasets' per-write
    bars only add noise."""
    enable()
    hf_datasets.disable_progress_bars()


INTERRUPTED_EXIT = 130  # 128 + SIGINT: Ctrl-C


def main(args: list[str] | None = None) -> None:
    """Entry point: a problem the user can fix (m1data's own errors: bad file, config, name, key,
    endpoint; a full, read-only or failing disk) is one clear line and exit code 2; SIGTERM
    unwinds and exits 143, Ctrl-C exits 130, each with one line saying finished work is kept;
    anything else is a bug, shown with its traceback and a request to report it. `args` (default
    the command line) is for another entry point that is one of these commands (`python -m
    m1data.train.sft` is `m1data train`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)  # unwind (locks, temporary files, servers), then 143
    _mask_usage_errors()
    try:
        app(args=args, prog_name="m1data")
    except Terminated:
        console.print("[yellow]terminated[/yellow] (SIGTERM); completed work is kept: run the same command again "
                      "to continue", soft_wrap=True)
        raise SystemExit(TERMINATED_EXIT) from None
    except SystemExit as stop:
        if stop.code == INTERRUPTED_EXIT:  # Typer's exit for a KeyboardInterrupt, which it ends silently
            console.print("[yellow]interrupted[/yellow] (Ctrl-C); completed work is kept: run the same command "
                          "again to continue", soft_wrap=True)
        raise
    except (M1DataError, FileNotFoundError) as err:
        _error_line(err)
        raise SystemExit(2) from None
    except Exception as err:
        cause = storage_cause(err)
        if cause is None:
            _internal_error()
            sys.excepthook = _masking(sys.excepthook)  # what prints the traceback once `raise` leaves main
            raise
        _error_line(StorageError(storage_message(cause, doing="use")))  # a full or read-only disk is no bug
        raise SystemExit(2) from None


def _mask_usage_errors() -> None:
    """Pass Click's usage errors through `redact_environment`. Why: Click prints them itself
    (`Invalid value for --mapping: ... got 'VALUE'`, `'VALUE' is not a valid integer`), quoting the
    value as given, and never through `_error_line`: a key pasted into the wrong option reached
    the terminal. Every error class that words its own message is wrapped, once per process
    (only the command-line entry point does this; m1data as a library leaves Click alone).
    typer 0.2x ships its own copy of Click (`typer.BadParameter` is not `click.BadParameter`), whose
    errors word their messages in typer's classes too: every class above typer's BadParameter counts."""
    classes: list[type] = [click.ClickException,
                           *(c for c in typer.BadParameter.__mro__ if c.__module__.startswith(("typer", "click")))]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        own = vars(cls).get("format_message")
        if own is not None and not getattr(own, "masked", False):
            def masked(self: Exception, _own: Callable[..., str] = own) -> str:
                return redact_environment(_own(self))

            masked.masked = True  # type: ignore[attr-defined]
            cls.format_message = masked  # type: ignore[method-assign]


def _masking(hook: Callable[..., Any]) -> Callable[..., Any]:
    """`hook` (typer's traceback printer, or Python's) with what it writes passed through
    `redact_environment`. Why: a bug's traceback quotes the exception's message and lines of
    code, any of which may hold a key from the environment (a header, a URL, a value quoted as
    given), and it goes to the terminal and CI logs. Typer sets its own hook again on its next call."""

    def masked(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        shown = io.StringIO()
        with contextlib.redirect_stderr(shown):
            hook(kind, value, tb)
        sys.stderr.write(redact_environment(shown.getvalue()))

    return masked


def _internal_error() -> None:
    """What is said before the traceback of a bug."""
    console.print(
        "[red]m1data hit an internal error[/red] (a bug, not a mistake in your input as far as it can tell): "
        "please report it with the command you ran and the traceback below.",
        soft_wrap=True,
    )


if __name__ == "__main__":
    main()


__all__ = [
    "app",
    "main",
]
