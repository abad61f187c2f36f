"""The `m1data` command. Each command is a thin shell over a library function of the same idea."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from m1data.output import Bars, console, enable

# Plain Click help: typer's rich panels print `<bool>` after every flag (typer 0.2x), as if
# `--force` took a value; Click's own layout shows flags as switches (`--force / --no-force`).
HELP_MODE = None
app = typer.Typer(help="Build, check and publish the m1 medical reasoning datasets.", no_args_is_help=True,
                  rich_markup_mode=HELP_MODE)

OutOpt = Annotated[Path, typer.Option("--out", help="Output file (.parquet or .jsonl).")]
OutArg = Annotated[Path, typer.Argument(help="Kept rows out; the rows not kept go beside it as OUT.dropped.<ext>, with their reasons.")]
PathOpt = Annotated[Optional[Path], typer.Option("--path", help="Local file in the native format (default: the Hub id m1 used).")]


def _refuse_overwrite(inputs: list[Path | None], outs: list[Path]) -> None:
    """A load never writes over the raw file it reads (`--out` equal to `--path`, or the
    dropped file beside `--out` landing on it): the raw file may be the only copy."""
    from m1data.pipeline import dropped_path

    raw = {p.resolve() for p in inputs if p is not None}
    for target in outs:
        for written in (target, dropped_path(target)):
            if written.resolve() in raw:
                raise typer.BadParameter(f"writing {written} would overwrite the input file; choose another --out",
                                         param_hint="--out")


def _report_load(name: str, result, out: Path) -> None:
    from m1data.pipeline import write_result

    dropped = write_result(result.rows, result.dropped, out)
    console.print(f"{name}: {len(result.rows):,} rows -> {out}")
    if len(result.dropped):
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(result.reasons().items()))
        console.print(f"{name}: {len(result.dropped):,} dropped ({reasons}) -> {dropped}")


def _mapping(spec: str | None) -> dict | None:
    """`question=COL,options=COL,answer=COL[,id=COL][,context=COL]`; several option columns are
    joined with `+` (`options=opa+opb+opc+opd`)."""
    if spec is None:
        return None
    mapping: dict = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, eq, column = part.partition("=")
        if not eq or not key.strip() or not column.strip():
            raise typer.BadParameter(f"expected KEY=COLUMN, got {part!r}", param_hint="--mapping")
        columns = [c.strip() for c in column.split("+")]
        mapping[key.strip()] = columns if len(columns) > 1 else columns[0]
    return mapping


@app.command()
def load(
    source: Annotated[str, typer.Argument(help="medqa, headqa, medmcqa, pubmedqa, or a name of your choosing for a "
                                               "file read through --mapping")],
    out: OutOpt,
    path: PathOpt = None,
    split: Annotated[Optional[str], typer.Option(help="Split (PubMedQA: train = the 500-PMID pool, test, all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the per-row option shuffle.")] = 42,
    cop_base: Annotated[Optional[int], typer.Option(
        "--cop-base", help="MedMCQA: a local file's cop counts from 0 (Hub) or 1 (original release); "
                           "needed only when the file's values cannot tell.")] = None,
    mapping: Annotated[Optional[str], typer.Option(
        "--mapping", help="Columns of a file m1data has no loader for: question=COL,options=COL,answer=COL "
                          "(options may be several columns joined by +; optional id=COL, context=COL).")] = None,
) -> None:
    """Load one raw source into the m1data row schema."""
    from m1data.sources import load_source

    _refuse_overwrite([path], [out])
    result = load_source(source, path, split=split, seed=seed, cop_base=cop_base, mapping=_mapping(mapping))
    _report_load(source, result, out)


@app.command("load-eval")
def load_eval(
    name: Annotated[str, typer.Argument(help="An eval-set name (see `m1data eval-sets`), mmlu_medical, or a file.")],
    out: OutOpt,
    path: PathOpt = None,
) -> None:
    """Load an eval set (a decontamination target and scoring set)."""
    import warnings

    from m1data.evalsets import AnswerSkewWarning, load_eval_any

    inputs = [path, Path(name) if Path(name).exists() else None]
    _refuse_overwrite(inputs, [out])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnswerSkewWarning)
        results = load_eval_any(name, path)
    for warning in caught:
        if issubclass(warning.category, AnswerSkewWarning):
            console.print(f"[yellow]warning:[/yellow] {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    targets = {
        set_name: out if len(results) == 1 else out.with_name(f"{out.stem}.{set_name.replace('/', '_')}{out.suffix}")
        for set_name in results
    }
    _refuse_overwrite(inputs, list(targets.values()))
    for set_name, result in results.items():
        _report_load(set_name, result, targets[set_name])


@app.command("eval-sets")
def eval_sets() -> None:
    """List the eval sets m1data knows by name."""
    from m1data.evalsets import EVAL_SETS

    for name in EVAL_SETS:
        typer.echo(name)


class _BuildCommand(typer.core.TyperCommand):
    """`build`'s help names the datasets from the builder table (m1data.builders.BUILDERS), read
    when the help is shown: importing the table loads `datasets` (about a second), which the other
    commands and `m1data --help` should not pay."""

    def format_help(self, ctx, formatter) -> None:  # type: ignore[no-untyped-def]
        from m1data.builders import BUILDERS

        for param in self.params:
            if param.name == "dataset":
                param.help = f"The dataset to build: {', '.join(BUILDERS)}."
        super().format_help(ctx, formatter)


@app.command(cls=_BuildCommand)
def build(
    dataset: Annotated[str, typer.Argument(help="The dataset to build (the list: m1data build --help).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (stage outputs and manifests).")],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML overriding the builder's (paper) defaults; none: builders/configs/embedded.yaml.")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Re-run from this stage on.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Stop after this stage.")] = None,
    force: Annotated[bool, typer.Option(help="Re-run every stage even when its manifest matches.")] = False,
    from_m23k: Annotated[Optional[str], typer.Option("--from-m23k", help="Sample from an existing m23K (folder, file or repo id).")] = None,
    repo_id: Annotated[Optional[str], typer.Option("--repo-id", help="Repo id the card should name (for publishing later).")] = None,
    hub_config: Annotated[Optional[str], typer.Option("--hub-config", help="Config name in the Hub folder (default: the dataset's name, e.g. m1k).")] = None,
    executor: Annotated[Optional[str], typer.Option("--executor", help="local (default) or ray; overrides `executor:` in the config.")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster: auto, ray://host:10001 (default: start one here).")] = None,
    hub_out: Annotated[Optional[Path], typer.Option("--hub-out", help="Hub-layout folder to write (default: RUN_DIR/hub).")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Exit 0 when the build stops early (an endpoint not up, transient failures left).")] = False,
) -> None:
    """Build a dataset: run its stages under RUN_DIR, skipping completed ones, then write the
    Hub-layout folder RUN_DIR/hub (parquet, card, images) that `m1data publish` uploads."""
    from m1data.builders import BUILDERS
    from m1data.distributed import load_build_config, make_executor
    from m1data.errors import UserError
    from m1data.pipeline import RunLocked, check_stage_names, run_lock

    if dataset not in BUILDERS:
        raise typer.BadParameter(f"choose from {', '.join(BUILDERS)}", param_hint="DATASET")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; a build writes a run folder there: name a folder (new or a run's)")
    builder = BUILDERS[dataset]
    cfg, executor_config = load_build_config(builder.config, config, executor, ray_address)
    if from_m23k is not None:
        from m1data.builders.m1k import resample_stages

        if dataset != "m1k":
            raise typer.BadParameter("--from-m23k goes with m1k", param_hint="--from-m23k")
        stages = resample_stages(from_m23k, cfg.sample)
    else:
        stages = builder.stages(cfg)
    check_stage_names(stages, start, until)  # every argument checked before anything starts
    runner = make_executor(executor_config)  # before the lock: a missing extra leaves no run folder behind
    hub_folder = hub_out or out / "hub"
    _refuse_other_hub(hub_folder, dataset)
    try:
        with run_lock(out):  # one build per run folder, held through the export
            _run_and_export(stages, dataset, out, start=start, until=until, force=force, repo_id=repo_id,
                            hub_config=hub_config, hub_folder=hub_folder, allow_partial=allow_partial,
                            executor=runner)
    except RunLocked as err:
        console.print(f"[red]error:[/red] {err}", soft_wrap=True)
        raise typer.Exit(1) from None


def _refuse_other_hub(folder: Path, dataset: str) -> None:
    """Builds of m23K and m1K may share a run folder (m1K reuses m23K's stages), but not a Hub
    folder: the second export would silently replace the first's data and card."""
    from m1data.export import hub_folder_dataset

    held = hub_folder_dataset(folder)
    if held is not None and held != dataset.lower():
        raise typer.BadParameter(f"{folder} holds the {held} build; writing {dataset} there would replace it. "
                                 f"Pass --hub-out {folder.parent / ('hub-' + dataset)} (or another --out)",
                                 param_hint="--hub-out")


def _run_and_export(stages, dataset: str, out: Path, *, start, until, force: bool, repo_id, hub_config,
                    hub_folder: Path, allow_partial: bool = False, executor=None) -> None:
    """The stages (with the embedded model's server up while they run, when they use it), the
    funnel, then the Hub folder. A build that stops early (an endpoint not up, transient failures
    left) exits 1 unless `allow_partial`: scripts must not take it for done."""
    from m1data.funnel import funnel_markdown
    from m1data.export import export_run
    from m1data.llm.embedded import serve_embedded
    from m1data.pipeline import StageIncomplete, StageNotReady, run_pipeline

    partial_exit = 0 if allow_partial else 1
    try:
        with serve_embedded(stages, out):
            rows = run_pipeline(stages, out, start=start, until=until, force=force, executor=executor)
    except StageNotReady as stop:
        typer.echo(funnel_markdown(out))
        console.print(f"[yellow]{stop}[/yellow]\nThe stages before it are complete in {out}; configure the "
                      "endpoint (see README, --config) and run the same command again to continue.", soft_wrap=True)
        raise typer.Exit(partial_exit) from None
    except StageIncomplete as stop:
        typer.echo(funnel_markdown(out))
        console.print(f"[red]{stop}[/red]", soft_wrap=True)
        raise typer.Exit(partial_exit) from None
    typer.echo(funnel_markdown(out))
    if rows is not None and len(rows) == 0:
        console.print("[yellow]The build ended with 0 rows[/yellow] (the funnel above says where they went); "
                      "no Hub folder written.", soft_wrap=True)
        return
    if until is None:
        folder = export_run(dataset, out, hub_folder, repo_id=repo_id, config_name=hub_config)
        console.print(f"Hub-layout folder: {folder} (load it with datasets.load_dataset({str(folder)!r}))")


@app.command()
def funnel(run_dir: Annotated[Path, typer.Argument(help="A run directory made by `m1data build`.")]) -> None:
    """Print the per-source, per-stage funnel of a run (paper Table 3 shape, markdown)."""
    from m1data.funnel import funnel_markdown

    typer.echo(funnel_markdown(run_dir))


@app.command()
def lineage(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    row_id: Annotated[str, typer.Argument(help="A row id, e.g. medmcqa:<uuid> or headqa:<exam>:<qid>.")],
) -> None:
    """Follow one row through the stages of a run: where it was kept, where and why it was dropped."""
    from m1data.funnel import lineage as trace

    history = trace(run_dir, row_id)
    if not history:
        raise typer.BadParameter(f"no row {row_id!r} in {run_dir}", param_hint="ROW_ID")
    for step in history:
        typer.echo(json.dumps(step, ensure_ascii=False))


ExecutorOpt = Annotated[str, typer.Option(
    "--executor", help="local, or ray: the fuzzy matcher's length bands as Ray tasks, as in `build` (same output).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray cluster: auto, ray://host:10001 (default: start one here).")]


def _file_context(out_path: Path, executor: str, ray_address: str | None):  # type: ignore[no-untyped-def]
    """The run context of a command over one file: its outputs beside OUT, and the executor a
    build would use for the same --executor/--ray-address (m1data.distributed), connected first
    so that a missing extra stops the command before it reads anything."""
    from m1data.distributed import executor_config, make_executor
    from m1data.pipeline import RunContext

    runner = make_executor(executor_config(executor, ray_address))
    return RunContext(run_dir=out_path.parent, stage_dir=out_path.parent, executor=runner)


@app.command()
def dedup(
    in_path: Annotated[Path, typer.Argument(help="Rows in (.parquet or .jsonl).")],
    out_path: OutArg,
    column: Annotated[Optional[str], typer.Option("--column", help="Column to compare (default: question stem + option set).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="rapidfuzz fuzz.ratio at or above which rows match.")] = 95.0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Fuzzy deduplication: a row goes when an earlier row matches it (exact all-pairs answer)."""
    from m1data.dedup import DedupConfig, Deduplicate
    from m1data.pipeline import refuse_overwrite, run_on_file

    refuse_overwrite(in_path, out_path)  # before a Ray instance starts
    ctx = _file_context(out_path, executor, ray_address)
    _print_stats(run_on_file(Deduplicate(DedupConfig(threshold=threshold, column=column)), in_path, out_path, ctx))


@app.command()
def decontaminate(
    in_path: Annotated[Path, typer.Argument(help="Rows in (.parquet or .jsonl).")],
    out_path: OutArg,
    eval_names: Annotated[list[str], typer.Option("--eval", help="NAME, NAME=LOCAL_FILE (see `m1data eval-sets`), or a file of any known shape; repeatable.")],
    threshold: Annotated[float, typer.Option("--threshold")] = 95.0,
    ngram: Annotated[int, typer.Option("--ngram", help="Word n-gram size of the second check; 0 turns it off.")] = 8,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Remove rows that match any eval item (question stem + option set, fuzzy ratio >= threshold)."""
    from m1data.dedup import Decontaminate, DecontaminateConfig
    from m1data.evalsets import EvalInput
    from m1data.pipeline import refuse_overwrite, run_on_file

    evals = []
    for spec in eval_names:
        name, _, path = spec.partition("=")
        evals.append(EvalInput(name=name, path=path or None))
    eval_files = [Path(e.path or e.name) for e in evals if e.path or Path(e.name).exists()]
    refuse_overwrite([in_path, *eval_files], out_path)  # an eval file is an input too
    ctx = _file_context(out_path, executor, ray_address)
    stage = Decontaminate(DecontaminateConfig(threshold=threshold, ngram=ngram), evals)
    _print_stats(run_on_file(stage, in_path, out_path, ctx))


run_app = typer.Typer(help="Run one LLM stage over a file of rows.", no_args_is_help=True, rich_markup_mode=HELP_MODE)
app.add_typer(run_app, name="run")

InArg = Annotated[Path, typer.Argument(help="Rows in (.parquet or .jsonl).")]
InsArg = Annotated[
    list[Path], typer.Argument(help="Rows in: one or more .parquet/.jsonl files, or folders of them, read as one.")
]
KeyEnvOpt = Annotated[Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key.")]

# The flags every `run` command of an LLM stage takes, defined once: each sets the LLMRuntime
# field named beside it, and one left unset keeps the stage's own default.
_RUNTIME_FLAGS: list[tuple[str, str, object, object]] = [
    ("cache", "cache_path", Annotated[Optional[Path], typer.Option("--cache", help="SQLite reply cache (default: OUT.llm_cache.sqlite).")], None),
    ("concurrency", "concurrency", Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once (default 32).")], None),
    ("rpm", "rpm", Annotated[Optional[float], typer.Option("--rpm", help="Requests-per-minute limit.")], None),
    ("tpm", "tpm", Annotated[Optional[float], typer.Option("--tpm", help="Tokens-per-minute limit.")], None),
    ("timeout", "timeout", Annotated[Optional[float], typer.Option("--timeout", help="Seconds one attempt may take (default 600; traces 1200: R1 may think for minutes).")], None),
    ("retry_failed", "retry_failed", Annotated[bool, typer.Option("--retry-failed", help="Send again requests whose recorded outcome was a failure.")], False),
    ("batch", "batch", Annotated[bool, typer.Option("--batch", help="Send through the provider's Batch API (cheaper, answered within a day); same cache, resumable.")], False),
    ("prices", "prices_file", Annotated[Optional[Path], typer.Option("--prices", help='JSON price table, {"MODEL": {"input": 0.28, "output": 0.42}} in dollars per 1M tokens, for models the built-in one does not know.')], None),
]
_DRY_RUN = ("dry_run", Annotated[bool, typer.Option("--dry-run", help="Print requests, cached replies, tokens and cost; call nothing.")], False)


def _with_runtime_flags(default_runtime):
    """Give a `run` command the runtime flags and `--dry-run`, and call it with `runtime` (the
    stage's default LLMRuntime, with the flags given) and `dry_run`. Typer reads the command's
    parameters from its signature, so the flags are added to that signature here."""

    def decorate(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.name not in ("runtime", "dry_run")]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
                 for name, _, kind, default in _RUNTIME_FLAGS]
        added.append(inspect.Parameter(_DRY_RUN[0], inspect.Parameter.KEYWORD_ONLY, annotation=_DRY_RUN[1],
                                       default=_DRY_RUN[2]))

        @functools.wraps(command)
        def run(**kwargs):
            given = {}
            for name, field_name, _, default in _RUNTIME_FLAGS:
                value = kwargs.pop(name)
                if value is not None and value != default:
                    given[field_name] = str(value) if isinstance(value, Path) else value
            runtime = dataclasses.replace(default_runtime(), **given)
            return command(runtime=runtime, dry_run=kwargs.pop("dry_run"), **kwargs)

        params = own + added
        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


def _default_runtime(config: str):
    def make():
        import importlib

        module, name = config.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)().runtime

    return make


def _print_stats(stats: dict) -> None:
    if stats:
        typer.echo(json.dumps(stats, indent=2, default=str))


@run_app.command("difficulty")
@_with_runtime_flags(_default_runtime("m1data.difficulty.DifficultyConfig"))
def run_difficulty(
    in_paths: InsArg,
    out_path: OutArg,
    student: Annotated[list[str], typer.Option("--student", help="MODEL=BASE_URL; repeat for each student.")],
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 4000,
    drop_rule: Annotated[str, typer.Option("--drop-rule", help="any | all | none: drop when any/all students are right.")] = "any",
    api_key_env: KeyEnvOpt = None,
    *,
    runtime,
    dry_run: bool,
) -> None:
    """Keep only the questions the student models get wrong (paper: Qwen2.5-7B/32B-Instruct)."""
    from m1data.difficulty import run_difficulty_file

    pairs = []
    for spec in student:
        model, sep, url = spec.partition("=")
        if not sep or not model or not url:
            raise typer.BadParameter(f"expected MODEL=BASE_URL, got {spec!r}", param_hint="--student")
        pairs.append((model, url))
    _print_stats(run_difficulty_file(in_paths, out_path, pairs, max_tokens=max_tokens, drop_rule=drop_rule,
                                     api_key_env=api_key_env, runtime=runtime, dry_run=dry_run))


@run_app.command("traces")
@_with_runtime_flags(_default_runtime("m1data.traces.TracesConfig"))
def run_traces(
    in_paths: InsArg,
    out_path: OutArg,
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible endpoint of the teacher.")],
    model: Annotated[str, typer.Option("--model", help="Teacher model, e.g. deepseek-reasoner.")],
    api_key_env: KeyEnvOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 8000,
    require_reasoning: Annotated[bool, typer.Option(
        "--require-reasoning/--no-require-reasoning",
        help="Stop after a 3-request preflight when none of its answers has reasoning.")] = True,
    *,
    runtime,
    dry_run: bool,
) -> None:
    """Have a reasoning teacher write a chain of thought and answer; keep verified-correct rows."""
    from m1data.traces import run_traces_file

    _print_stats(run_traces_file(in_paths, out_path, base_url, model, api_key_env, max_tokens=max_tokens,
                                 require_reasoning=require_reasoning, runtime=runtime, dry_run=dry_run))


@run_app.command("tag")
@_with_runtime_flags(_default_runtime("m1data.mesh.MeshConfig"))
def run_tag(
    in_paths: InsArg,
    out_path: OutArg,
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible endpoint.")] = "https://api.openai.com/v1",
    model: Annotated[str, typer.Option("--model")] = "gpt-4o",
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="Asks per row before it is recorded untagged.")] = 3,
    *,
    runtime,
    dry_run: bool,
) -> None:
    """Tag each row with one of the 76 MeSH qualifiers by asking an LLM (m1 used GPT-4o)."""
    from m1data.mesh import tag_file

    _print_stats(tag_file(in_paths, out_path, base_url=base_url, model=model, api_key_env=api_key_env,
                          max_attempts=max_attempts, runtime=runtime, dry_run=dry_run))


@run_app.command("tag-offline")
def run_tag_offline(
    in_path: InArg,
    out_path: OutArg,
    model_path: Annotated[Optional[Path], typer.Option("--model-path", help="A tagger from `m1data run train-tagger` (default: zero-shot).")] = None,
) -> None:
    """Tag rows with MeSH qualifiers without an LLM (sentence embeddings, zero-shot or trained)."""
    from m1data.mesh_offline import tag_offline_file

    _print_stats(tag_offline_file(in_path, out_path, model_path))


@run_app.command("train-tagger")
def run_train_tagger(
    labels: Annotated[Path, typer.Argument(help="Rows with a domain_code column (e.g. LLM-tagged).")],
    model_path: Annotated[Path, typer.Argument(help="Where to save the trained tagger.")],
) -> None:
    """Train the offline tagger on LLM-tagged rows (TF-IDF + logistic regression)."""
    from m1data.mesh_offline import train_offline_file

    train_offline_file(labels, model_path)
    console.print(f"tagger saved to {model_path}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Option("--recipe", help="m1-7B-1K, m1-7B-23K, m1-32B-1K or a recipe YAML.")],
) -> None:
    """SFT with TRL on an m1 dataset; any further --flag overrides the recipe (TRL's SFTConfig names)."""
    from m1data.train.sft import main as train_main
    from m1data.train.sft import parse_cli

    train_main(parse_cli(["--recipe", recipe, *ctx.args]))


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


def _template_stops(tokenizer_name: str):
    """Stop ids from the model's own tokenizer and chat template, or None when it cannot be loaded."""
    from m1data.infer.budget import template_stop_ids

    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    except (ImportError, OSError, ValueError) as err:
        console.print(f"[yellow]warning:[/yellow] cannot load the tokenizer {tokenizer_name!r} ({err.__class__.__name__}); "
                      "stopping on marker strings only, with special tokens kept in the text. Pass --tokenizer to stop "
                      "on the model's own end-of-turn tokens.")
        return None
    return template_stop_ids(tokenizer)


def _engine_and_stops(engine: str, model: str, base_url: str | None, api_key_env: str | None = None,
                      tokenizer: str | None = None):
    """The engine, and the (thinking, answer) stop ids budget forcing needs (reference s.10), read
    from the model's tokenizer and chat template; None when only stop strings can be used."""
    import os

    if api_key_env is not None and engine != "http":
        raise typer.BadParameter("--api-key-env goes with --engine http", param_hint="--api-key-env")
    if engine == "http":
        from m1data.llm import VLLM_EXTRA_PARAMS, HTTPConfig, HTTPEngine

        if not base_url:
            raise typer.BadParameter("--engine http needs --base-url", param_hint="--base-url")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise typer.BadParameter(f"environment variable {api_key_env} is not set", param_hint="--api-key-env")
        config = HTTPConfig(base_url=base_url, api_key_env=api_key_env, extra_params=VLLM_EXTRA_PARAMS)
        return HTTPEngine(config, require_key=api_key_env is not None), _template_stops(tokenizer or model)
    if engine == "hf":
        from m1data.infer.budget import template_stop_ids
        from m1data.llm.hf import HFConfig, HFEngine

        hf = HFEngine(HFConfig(model=model))
        return hf, template_stop_ids(hf.tokenizer)
    if engine == "vllm":
        from m1data.llm.vllm import VLLMConfig, VLLMEngine

        return VLLMEngine(VLLMConfig(model=model)), _template_stops(tokenizer or model)
    raise typer.BadParameter("choose http, hf or vllm", param_hint="--engine")


def _eval_sets(specs: list[str], path: Path | None) -> dict:
    """Eval sets by name from `--eval-sets` entries, as `decontaminate --eval` reads them."""
    from m1data.evalsets import EVAL_SETS, load_eval_any

    entries = [e.strip() for spec in specs for e in spec.split(",") if e.strip()]
    if not entries:
        raise typer.BadParameter("no eval set given", param_hint="--eval-sets")
    if path is not None and len(entries) != 1:
        raise typer.BadParameter("--eval-path goes with exactly one eval set", param_hint="--eval-path")
    sets = {}
    for entry in entries:
        name, eq, file = entry.partition("=")
        if not eq:
            loaded = load_eval_any(name, path)
        elif name in EVAL_SETS or name == "mmlu_medical":
            loaded = load_eval_any(name, file)
        else:  # a name of the user's choosing for a file of rows
            loaded = load_eval_any(file)
            if len(loaded) != 1:
                raise typer.BadParameter(f"{file} holds {len(loaded)} eval sets; name them with NAME only if it holds one",
                                         param_hint="--eval-sets")
            loaded = {name: next(iter(loaded.values()))}
        sets.update({n: r.rows for n, r in loaded.items()})
    return sets


def _budget_config(model: str, stops, forcing_string: str, answer_max_tokens: int, concurrency: int):
    from m1data.infer.budget import BudgetConfig

    if stops is None:  # stop strings only: they can match only if the server keeps special tokens in the text
        return BudgetConfig(model=model, forcing_string=forcing_string, answer_max_tokens=answer_max_tokens,
                            concurrency=concurrency, extra_params={"skip_special_tokens": False})
    return BudgetConfig(model=model, forcing_string=forcing_string, answer_max_tokens=answer_max_tokens,
                        concurrency=concurrency, thinking_stop_token_ids=tuple(stops[0]),
                        answer_stop_token_ids=tuple(stops[1]))


class _ProgressBar:
    """A bar per eval set, fed by `infer`'s progress(set, done, total) callback."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars = Bars(show=enabled)
        self.tasks: dict = {}

    def __enter__(self):
        self.bars.__enter__()
        return self.tick if self.enabled else None

    def tick(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bars.add(name, total=total)
        self.tasks[name].update(completed=done, total=total)

    def __exit__(self, *exc):
        self.bars.__exit__(*exc)
        return False


def _label(label: str | None, model: str) -> str:
    from m1data.infer.sweep import short_label

    return label or short_label(model)


@infer_app.command("run")
def infer_run(
    out: Annotated[Path, typer.Option("--out", help="Folder for records.jsonl and metrics.json.")],
    model: ModelOpt,
    eval_names: EvalOpt,
    engine: EngineOpt = "http",
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    tokenizer: TokenizerOpt = None,
    label: LabelOpt = None,
    eval_path: EvalPathOpt = None,
    budget: Annotated[int, typer.Option("--budget", help="Thinking budget in tokens.")] = 4096,
    forcing_rounds: Annotated[int, typer.Option("--forcing-rounds", help="Times to append the forcing string.")] = 0,
    forcing_string: Annotated[str, typer.Option("--forcing-string")] = "Wait",
    answer_max_tokens: Annotated[int, typer.Option("--answer-max-tokens")] = 1024,
    concurrency: Annotated[int, typer.Option("--concurrency")] = 16,
    limit: Annotated[Optional[int], typer.Option("--limit", help="First N questions of each set.")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Generate with a thinking budget (and optional budget forcing) and score per eval set."""
    import dataclasses

    from m1data.infer.score import run_infer

    sets = _eval_sets(eval_names, eval_path)
    eng, stops = _engine_and_stops(engine, model, base_url, api_key_env, tokenizer)
    config = dataclasses.replace(_budget_config(model, stops, forcing_string, answer_max_tokens, concurrency),
                                 thinking_budget=budget, forcing_rounds=forcing_rounds)
    with _ProgressBar(progress) as tick:
        metrics = run_infer(eng, sets, out, config, limit=limit, progress=tick)
    metrics["label"] = _label(label, model)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _print_stats(metrics)


@infer_app.command("sweep")
def infer_sweep(
    out: Annotated[Path, typer.Option("--out", help="Folder for one run per point, sweep.json and the plots.")],
    model: ModelOpt,
    eval_names: EvalOpt,
    engine: EngineOpt = "http",
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    tokenizer: TokenizerOpt = None,
    label: LabelOpt = None,
    eval_path: EvalPathOpt = None,
    budgets: Annotated[str, typer.Option("--budgets", help="Comma-separated thinking budgets.")] = "512,1024,2048,4096,8192",
    forcing_rounds: Annotated[str, typer.Option("--forcing-rounds", help="Comma-separated forcing rounds.")] = "0",
    forcing_string: Annotated[str, typer.Option("--forcing-string")] = "Wait",
    answer_max_tokens: Annotated[int, typer.Option("--answer-max-tokens")] = 1024,
    concurrency: Annotated[int, typer.Option("--concurrency")] = 16,
    limit: Annotated[Optional[int], typer.Option("--limit")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Accuracy against thinking budget (paper Figure 1) and forcing rounds (Figure 3), with plots."""
    from m1data.infer.sweep import run_sweep

    sets = _eval_sets(eval_names, eval_path)
    eng, stops = _engine_and_stops(engine, model, base_url, api_key_env, tokenizer)
    base = _budget_config(model, stops, forcing_string, answer_max_tokens, concurrency)
    with _ProgressBar(progress) as tick:
        points = run_sweep(eng, sets, out, base, [int(b) for b in budgets.split(",")],
                           [int(r) for r in forcing_rounds.split(",")], limit=limit, label=_label(label, model),
                           progress=tick)
    _print_stats({"points": points})


@infer_app.command("plot")
def infer_plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Folders of `m1data infer sweep` or `infer run`, one per model.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the plots.")],
    labels: Annotated[Optional[list[str]], typer.Option("--label", help="Legend name per RUN_DIR, in order; repeatable.")] = None,
) -> None:
    """Overlay several models' sweeps in the paper's Figures 1 and 3."""
    from m1data.infer.sweep import load_points, plot_sweep

    if labels and len(labels) != len(run_dirs):
        raise typer.BadParameter(f"{len(labels)} labels for {len(run_dirs)} run folders", param_hint="--label")
    points = [p for i, run in enumerate(run_dirs) for p in load_points(run, labels[i] if labels else None)]
    written = plot_sweep(points, out)
    if not written:
        console.print("nothing to plot: every point has the same budget and the same forcing rounds")
    for path in written:
        typer.echo(str(path))


@app.command()
def publish(
    folder: Annotated[Path, typer.Argument(help="A Hub-layout folder written by a build.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="e.g. my-org/m1K")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; no network call.")] = False,
) -> None:
    """Upload a Hub folder in one commit, merging with the configs already on the repo.

    The token comes from HF_TOKEN or the saved `hf auth login`; it is never written anywhere."""
    from m1data.hub import publish as publish_folder

    typer.echo(publish_folder(folder, repo_id, private=private, dry_run=dry_run).describe())


def _print_version(value: bool) -> None:
    if value:
        from m1data import __version__

        typer.echo(f"m1data {__version__}")
        raise typer.Exit()


@app.callback()
def _quiet_datasets(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the m1data version and exit.")] = False,
) -> None:
    """m1data's messages and progress bars on (a library call keeps them off); datasets' per-write
    bars only add noise."""
    import datasets

    enable()
    datasets.disable_progress_bars()


def main() -> None:
    """Entry point: a problem the user can fix (m1data's own errors: bad file, config, name, key,
    endpoint) is one clear line and exit code 2; SIGTERM unwinds and exits 143; anything else is
    a bug, shown with its traceback and a request to report it."""
    import signal
    import threading

    from rich.markup import escape

    from m1data.errors import TERMINATED_EXIT, M1DataError, Terminated, raise_terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)  # unwind (locks, temporary files, servers), then 143
    try:
        app()
    except Terminated:
        console.print("[yellow]terminated[/yellow] (SIGTERM); completed work is kept: run the same command again "
                      "to continue", soft_wrap=True)
        raise SystemExit(TERMINATED_EXIT) from None
    except (M1DataError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)  # [brackets] are text; one line
        raise SystemExit(2) from None
    except Exception:
        console.print(
            "[red]m1data hit an internal error[/red] (a bug, not a mistake in your input as far as it can tell): "
            "please report it with the command you ran and the traceback below.",
            soft_wrap=True,
        )
        raise


if __name__ == "__main__":
    main()


__all__ = [
    "app",
    "main",
]
