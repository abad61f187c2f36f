"""The jobs m1data does, one public function each: build a dataset, resample m1K from an m23K that
exists, load a source or an eval set into a file, run one stage over a file. Publishing is
`m1data.publishing.hub.publish`; scoring a model on eval sets (`m1data infer run/sweep`) is
`m1data.infer.jobs`.

Why one module: the command line, a Python session, a config and Ray call these same functions,
so they cannot disagree; `m1data.cli` only parses arguments, calls one of them and prints. A job
stays quiet (m1data.output): it logs and prints nothing, and what it did comes back as a value. A
build that stops early (an endpoint not up, requests that failed transiently) is such a value, not
an exception: its funnel and where and why it stopped are in the `BuildResult`.

The one-stage file runners share one name pattern, ``run_<stage>_file(in_path, out_path, ...)``,
and one result: the stage statistics with rows in, out and dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import datasets

from m1data.builders import BUILDERS, Builder, config_file, default_config_path
from m1data.builders.m1k import resample_stages
from m1data.config import ConfigError, file_root, from_dict, key_path, read_mapping
from m1data.errors import UserError
from m1data.llm.embedded import serve_embedded
from m1data.llm.stages import LLMRuntime
from m1data.output import datasets_bars_off
from m1data.publishing.export import export_run, hub_folder_dataset
from m1data.publishing.hub import check_config_name, check_repo_id
from m1data.reading.evalsets import AnswerSkewWarning, EvalInput, known_eval_set, load_eval_input
from m1data.reading.readers import LoadResult
from m1data.reading.sources import load_source
from m1data.running.distributed import ExecutorConfig, executor_config, make_executor
from m1data.running.funnel import funnel_markdown
from m1data.running.pipeline import (
    RunContext,
    Stage,
    StageIncomplete,
    StageNotReady,
    check_stage_names,
    dropped_path,
    output_lock,
    refuse_overwrite,
    run_lock,
    run_on_file,
    run_pipeline,
    write_result,
)
from m1data.stages.dedup import Decontaminate, DecontaminateConfig, DedupConfig, Deduplicate
from m1data.stages.difficulty import run_difficulty_file
from m1data.stages.mesh import run_tag_file
from m1data.stages.mesh_offline import run_tag_offline_file, train_offline_file
from m1data.stages.sampling import SampleConfig
from m1data.stages.traces import run_traces_file

__all__ = [
    "BuildResult",
    "LoadedFile",
    "build",
    "build_config",
    "build_settings",
    "load_eval_to_file",
    "load_source_to_file",
    "resample",
    "run_decontaminate_file",
    "run_dedup_file",
    "run_difficulty_file",
    "run_tag_file",
    "run_tag_offline_file",
    "run_traces_file",
    "stage_runtime",
    "stage_settings",
    "train_offline_file",
]

log = logging.getLogger(__name__)

Status = Literal["complete", "until", "not_ready", "incomplete"]
ConfigArg = Any  # None, a YAML path, a mapping, or the builder's config object


@dataclass
class BuildResult:
    """What a build did. `status`: ``complete`` (every stage ran; the Hub folder is written unless
    the rows ran out), ``until`` (stopped after `stopped_at` as asked), ``not_ready`` (stopped
    before `stopped_at`, whose preflight failed: `reason` says what it needs; the stages before
    it are complete), ``incomplete`` (`stopped_at` ran but some requests failed transiently; run
    the same build again to send exactly those)."""

    dataset: str
    run_dir: Path
    status: Status
    rows: datasets.Dataset | None = None  # the last stage's rows (None when it stopped early)
    funnel: str = ""  # the run's funnel, markdown (paper Table 3 shape); "" when no stage ran
    hub_folder: Path | None = None  # the Hub-layout folder written, None when none was
    stopped_at: str | None = None
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def stopped_early(self) -> bool:
        """Stopped for a problem (not ready, incomplete), not where it was asked to stop."""
        return self.status in ("not_ready", "incomplete")


# ---------------------------------------------------------------------------------------------
# Configs: the one loader of a builder's config


def _builder(dataset: str) -> Builder:
    if dataset not in BUILDERS:
        raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[dataset]


def _embedded_defaults(cls: type) -> Any:
    """The config a build uses when given none: builders/configs/embedded.yaml. The file is
    written for m1K (`m23k:` and `sample:`); another builder takes the parts its config has
    (m23K: the `m23k` section itself; the ablations: `m23k`)."""
    source = default_config_path()
    data = read_mapping(source)
    names = {f.name for f in dataclasses.fields(cls)}
    if "m23k" not in names:
        data = data["m23k"]
    return from_dict(cls, {k: v for k, v in data.items() if k in names}, where=file_root(source))


def _load_config(cls: type, config: ConfigArg) -> tuple[Any, ExecutorConfig | None]:
    """The builder's config and the file's ``executor:`` block (None when it has none). None: the
    embedded defaults; a path or a mapping: its part for this builder (`_builder_section`) over
    the paper defaults (`cls()`), unknown keys an error; a `cls` instance: as it is."""
    if config is None:
        return _embedded_defaults(cls), None
    if isinstance(config, cls):
        return config, None
    if isinstance(config, (str, Path)):
        config = config_file(config)
        data, where = read_mapping(config), file_root(config)
    elif isinstance(config, dict):
        data, where = dict(config), "config"
    else:
        raise UserError(f"config: expected a {cls.__name__}, a YAML path, a mapping or None, got {type(config).__name__}")
    block = data.pop("executor", None)
    if isinstance(block, str):  # `executor: ray`, short for {kind: ray}
        block = {"kind": block}
    executor = from_dict(ExecutorConfig, block, where=key_path(where, "executor")) if block else None
    data, where = _builder_section(cls, data, where)
    return from_dict(cls, data, where=where), executor


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _builder_section(cls: type, data: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """The part of a config mapping that builder config `cls` reads, and its `where`. One file
    serves every build (paper.yaml and the README are written for m1K: `m23k:` and `sample:`), as
    m1K and m23K share a run folder: m23K reads the `m23k:` section, and a top-level key that only
    other builds read (m1K's `sample`, the ablations' `seed`) is left out with a warning. Any
    other key stays an error, so a misspelt key is still refused."""
    names, at = _field_names(cls), where.removesuffix(":")  # a file's top level is the file itself
    owners: dict[str, list[str]] = {}  # a config file's top-level keys -> the builds that read them
    for b in BUILDERS.values():
        if "m23k" in _field_names(b.config):
            for name in _field_names(b.config):
                owners.setdefault(name, []).append(b.name)
    unused = sorted(k for k in data if k in owners and k not in names and k != "m23k")
    for key in unused:
        log.warning("%s: %s is a setting of %s, not used by this build", at, key, ", ".join(owners[key]))
    kept = {k: v for k, v in data.items() if k not in unused}
    if "m23k" in names or "m23k" not in kept:
        return kept, where
    section, unknown = kept.pop("m23k"), sorted(set(kept) - names)
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(owners))}")
    if kept:
        raise ConfigError(f"{at}: {', '.join(sorted(kept))} beside m23k:; m23K's settings go either all "
                          "under m23k: or all at the top level")
    if not isinstance(section, dict):
        raise ConfigError(f"{key_path(where, 'm23k')}: expected a mapping, got {type(section).__name__}")
    return section, key_path(where, "m23k")


# the section of a build config (m23K's) each one-stage command reads with --config
STAGE_SECTIONS = {"difficulty": "difficulty", "traces": "traces", "tag": "mesh"}


def stage_settings(stage: str, config: ConfigArg) -> Any:
    """The settings a build config (a YAML file, a shipped one's name, a mapping) gives one LLM
    stage ("difficulty", "traces" or "tag"), as `build m23k` would run it: what `m1data run STAGE
    --config` and the `settings` of `run_<stage>_file` start from, so a file run sends what the
    build sends (the embedded teacher's grammar, a chat template's switches, `top_p`)."""
    if stage not in STAGE_SECTIONS:
        raise UserError(f"no stage {stage!r} takes a config's settings; choose {', '.join(STAGE_SECTIONS)}")
    try:  # an m1K config holds its m23K's stages under `m23k:`; an m23K config at the top
        stages = build_config("m1k", config).m23k
    except ConfigError:
        stages = build_config("m23k", config)
    return getattr(stages, STAGE_SECTIONS[stage])


def build_config(dataset: str, config: ConfigArg = None) -> Any:
    """The config object `build(dataset, ..., config=config)` would use: with `config` None, the
    default (embedded model) build's; change its fields and pass it back to `build`."""
    return build_settings(dataset, config)[0]


def build_settings(dataset: str, config: ConfigArg = None, executor: str | ExecutorConfig | None = None,
                   ray_address: str | None = None) -> tuple[Any, ExecutorConfig]:
    """The builder's config and the executor `build` would use: the config file's ``executor:``
    block (not part of the builder's config, so switching executor re-runs nothing), with
    `executor` ("local", "ray" or an ExecutorConfig) and `ray_address` over it."""
    cfg, from_file = _load_config(_builder(dataset).config, config)
    return cfg, _executor(from_file, executor, ray_address)


def _executor(from_file: ExecutorConfig | None, executor: str | ExecutorConfig | None,
              ray_address: str | None) -> ExecutorConfig:
    if isinstance(executor, ExecutorConfig):
        return dataclasses.replace(executor, address=ray_address or executor.address)
    return executor_config(executor, ray_address, from_file)


# ---------------------------------------------------------------------------------------------
# Build and resample


@datasets_bars_off()
def build(
    dataset: str,
    out: str | Path,
    *,
    config: ConfigArg = None,
    executor: str | ExecutorConfig | None = None,
    start: str | None = None,
    until: str | None = None,
    force: bool = False,
    hub_out: str | Path | None = None,
    repo_id: str | None = None,
    hub_config: str | None = None,
    ray_address: str | None = None,
) -> BuildResult:
    """Build `dataset` (a name of `m1data.builders.BUILDERS`: m1k, m23k, ...) under run folder
    `out`, skipping stages whose manifest matches, then write the Hub-layout folder (`hub_out`,
    default OUT/hub) that `m1data.publishing.hub.publish` uploads.

    `config`: None (the embedded model in every role, builders/configs/embedded.yaml), a YAML
    path or a mapping over the paper defaults, or the builder's config object (`build_config`).
    `executor`: "local" (default), "ray" or an `ExecutorConfig`, over the file's ``executor:``.
    `start`/`until`/`force` as in `run_pipeline`; `repo_id` is named in the card, `hub_config`
    names the Hub config (default: the dataset's name). Stages that ask for the embedded model get
    its server for the length of the build."""
    cfg, executor_cfg = build_settings(dataset, config, executor, ray_address)
    stages = _builder(dataset).stages(cfg)
    check_stage_names(stages, start, until)  # every argument checked before anything starts
    return _run(dataset, stages, Path(out), executor_cfg,
                start=start, until=until, force=force, hub_out=hub_out, repo_id=repo_id, hub_config=hub_config)


@datasets_bars_off()
def resample(
    m23k: str | Path,
    out: str | Path,
    *,
    seed: int | None = None,
    n: int | None = None,
    config: ConfigArg = None,
    force: bool = False,
    hub_out: str | Path | None = None,
    repo_id: str | None = None,
    hub_config: str | None = None,
) -> BuildResult:
    """m1K drawn again from an m23K that exists (a Hub-layout folder, a .parquet/.jsonl file or a
    Hub repo id), without re-running anything before the sampler. The draw is the m1K config's
    `sample` (`config` as in `build`, or a `SampleConfig`), with `seed` and `n` over it when given.
    The card carries the m23K's teacher, students and decontamination forward. A config's
    ``executor:`` block is refused, as the command refuses ``--executor`` with ``--from-m23k``."""
    if isinstance(config, SampleConfig):
        sample = config
    else:
        cfg, executor = _load_config(BUILDERS["m1k"].config, config)
        if executor is not None:  # was ignored in silence, while the command refuses --executor here
            raise UserError("resample runs only the sampler, here, on no executor: the config's executor: block goes "
                            "with a build (m1data build without --from-m23k); remove it, or give another config")
        sample = cfg.sample
    given = {k: v for k, v in (("seed", seed), ("n", n)) if v is not None}
    sample = dataclasses.replace(sample, **given)
    return _run("m1k", resample_stages(str(m23k), sample), Path(out), ExecutorConfig(), start=None, until=None,
                force=force, hub_out=hub_out, repo_id=repo_id, hub_config=hub_config)


def _refuse_other_hub(folder: Path, dataset: str) -> None:
    """Builds of m23K and m1K may share a run folder (m1K reuses m23K's stages), but not a Hub
    folder: the second export would silently replace the first's data and card."""
    held = hub_folder_dataset(folder)
    if held is not None and held != dataset.lower():
        raise UserError(f"{folder} holds the {held} build; writing {dataset} there would replace it. "
                        f"Pass --hub-out {folder.parent / ('hub-' + dataset)} (or another --out)")


def _funnel(run_dir: Path) -> str:
    try:
        return funnel_markdown(run_dir)
    except FileNotFoundError:  # the first stage never completed
        return ""


def _run(dataset: str, stages: Sequence[Stage], out: Path, executor: ExecutorConfig, *, start: str | None,
         until: str | None, force: bool, hub_out: str | Path | None, repo_id: str | None,
         hub_config: str | None) -> BuildResult:
    """The stages under the run lock, with the embedded model's server up while they run when
    they use it; then the funnel and, when every stage ran and left rows, the Hub folder. `~` in
    `out` and `hub_out` is the home folder (a Python caller's "~/runs/m1k" made a folder named "~"
    here, and the readers, which expand it, then looked for the stage files in the home folder)."""
    out = out.expanduser()
    hub_out = None if hub_out is None else Path(hub_out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; a build writes a run folder there: name a folder (new or a run's)")
    if hub_config is not None:
        check_config_name(hub_config)  # before anything runs, not after the last stage
    if repo_id is not None:
        check_repo_id(repo_id)  # likewise: the card names it; a malformed id would reach `publish` only
    runner = make_executor(executor)  # before the lock: a missing extra leaves no run folder behind
    hub_folder = Path(hub_out) if hub_out is not None else out / "hub"
    _refuse_other_hub(hub_folder, dataset)
    with run_lock(out):  # one build per run folder, held through the export
        names = [stage.name for stage in stages]
        served = stages[: names.index(until) + 1] if until in names else stages  # no server for stages not run
        try:
            with serve_embedded(served, out):
                rows = run_pipeline(stages, out, start=start, until=until, force=force, executor=runner)
        except StageNotReady as stop:
            return BuildResult(dataset, out, "not_ready", funnel=_funnel(out), stopped_at=stop.stage, reason=str(stop))
        except StageIncomplete as stop:
            return BuildResult(dataset, out, "incomplete", funnel=_funnel(out), stopped_at=stop.stage,
                               reason=str(stop))
        result = BuildResult(dataset, out, "complete", rows=rows, funnel=_funnel(out))
        if until is not None:
            result.status, result.stopped_at = "until", until
            result.reason = f"stopped after {until!r} as asked; no Hub folder written"
        elif rows is not None and len(rows) == 0:
            result.reason = "the build ended with 0 rows (the funnel says where they went); no Hub folder written"
        else:
            result.hub_folder = export_run(dataset, out, hub_folder, repo_id=repo_id, config_name=hub_config)
        return result


# ---------------------------------------------------------------------------------------------
# Loading into files


@dataclass
class LoadedFile:
    """One loaded set written to files: its rows to `path`, the records not read to
    `dropped_path` (with their reasons, counted in `reasons`), and the records a split or scope
    filter left out, counted by why in `out_of_scope` (`LoadResult.out_of_scope`)."""

    name: str
    path: Path
    dropped_path: Path
    rows: int
    dropped: int
    reasons: dict[str, int]
    warnings: list[str] = dataclasses.field(default_factory=list)
    out_of_scope: dict[str, int] = dataclasses.field(default_factory=dict)
    unscored: int = 0  # of `rows`, the eval questions whose key could not be read (in `dropped` too, with why)


def _refuse_overwrite(inputs: Sequence[str | Path | None], outs: Sequence[Path]) -> None:
    """A load never writes over the raw file it reads (OUT equal to the input, or the dropped
    file beside OUT landing on it): the raw file may be the only copy."""
    raw = {Path(p).resolve() for p in inputs if p is not None}
    for target in outs:
        for written in (target, dropped_path(target)):
            if written.resolve() in raw:
                raise UserError(f"writing {written} would overwrite the input file; choose another --out")


def _write(name: str, result: LoadResult, out: Path, *, targets: bool = False) -> LoadedFile:
    """`result`'s rows to OUT and its dropped records to OUT.dropped; `targets` (an eval set): OUT
    holds the unscored questions too, after the rows (`LoadResult.targets`: answer_idx -1), their
    reasons still in OUT.dropped. Why: an eval set's OUT is read as it is by every eval door
    (`loaded_eval_rows`), and without them the questions whose key was broken were no
    decontamination targets there: their training copies stayed."""
    rows = result.targets() if targets else result.rows
    dropped = write_result(rows, result.dropped, out)
    return LoadedFile(name, out, dropped, len(rows), len(result.dropped), dict(sorted(result.reasons().items())),
                      out_of_scope=dict(result.out_of_scope), unscored=len(rows) - len(result.rows))


@datasets_bars_off()
def load_source_to_file(source: str, out: str | Path, path: str | Path | None = None, *, split: str | None = None,
                        seed: int = 42, cop_base: int | None = None,
                        mapping: dict[str, Any] | None = None) -> LoadedFile:
    """`m1data.reading.sources.load_source` into OUT (.parquet or .jsonl) and OUT.dropped.<ext>."""
    out = Path(out).expanduser()
    _refuse_overwrite([path], [out])
    with output_lock(out):  # one run per OUT, as every file run
        return _write(source, load_source(source, path, split=split, seed=seed, cop_base=cop_base, mapping=mapping),
                      out)


@datasets_bars_off()
def load_eval_to_file(name: str, out: str | Path, path: str | Path | None = None,
                      mapping: dict[str, Any] | None = None) -> list[LoadedFile]:
    """An eval set (a name, mmlu_medical, a file, or `NAME=FILE` as `--eval` writes it; `path` is
    the file of a NAME) into OUT; several sets (mmlu_medical, a file holding several) go to
    OUT.<set>.<ext> each. Read by `load_eval_input`, as every other door reads an eval entry: a
    file given as `mine=FILE` was refused here alone. An answer key skewed towards one letter (the
    `AnswerSkewWarning` of `load_eval`) is recorded in the first file's `warnings`, not raised. `mapping`:
    a file's columns and answer kind (`m1data.reading.evalsets.column_mapping`)."""
    out = Path(out).expanduser()
    if path is not None and not known_eval_set(name) and Path(name).expanduser().exists():
        raise UserError(f"{name} is a file and is loaded as it is; --path goes with an eval-set name "
                        f"(see `m1data eval-sets`), not with a file")
    entry = EvalInput.parse(name) if path is None else EvalInput(name, str(path))
    entry = dataclasses.replace(entry, mapping=mapping)
    entry.check()
    _refuse_overwrite([entry.local_file], [out])
    with output_lock(out):  # one run per OUT (its OUT.<set> files too), as every file run
        return _load_eval_sets_to(entry, out)


def _load_eval_sets_to(entry: EvalInput, out: Path) -> list[LoadedFile]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnswerSkewWarning)
        results = load_eval_input(entry)
    skew = [str(w.message) for w in caught if issubclass(w.category, AnswerSkewWarning)]
    for other in (w for w in caught if not issubclass(w.category, AnswerSkewWarning)):
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    targets = {
        set_name: out if len(results) == 1 else out.with_name(f"{out.stem}.{set_name.replace('/', '_')}{out.suffix}")
        for set_name in results
    }
    _refuse_overwrite([entry.local_file], list(targets.values()))
    written = [_write(set_name, result, targets[set_name], targets=True) for set_name, result in results.items()]
    written[0].warnings = skew
    return written


# ---------------------------------------------------------------------------------------------
# One stage over a file (the LLM stages' runners live beside their stages and are re-exported)


def _file_context(out_path: str | Path, executor: str | ExecutorConfig | None, ray_address: str | None) -> RunContext:
    """Outputs beside OUT, and the executor a build would use for the same executor/address: its
    extra checked first, so that a missing one stops the job before it reads anything, and Ray
    joined once the input is read (when the stage first uses it), so that a bad input is the
    local run's one line, not a Ray start and then that line."""
    out_path = Path(out_path).expanduser()
    runner = make_executor(_executor(None, executor, ray_address), join=False)
    return RunContext(run_dir=out_path.parent, stage_dir=out_path.parent, executor=runner)


def run_dedup_file(in_path: str | Path | Sequence[str | Path], out_path: str | Path, *, threshold: float = 95.0,
                   column: str | None = None, executor: str | ExecutorConfig | None = None,
                   ray_address: str | None = None) -> dict[str, Any]:
    """Fuzzy deduplication over files: a row goes when an earlier row matches it (exact
    all-pairs answer); OUT and OUT.dropped.<ext>. Returns the stage statistics."""
    refuse_overwrite(in_path, out_path)  # before a Ray instance starts
    stage = Deduplicate(DedupConfig(threshold=threshold, column=column))  # its settings checked, likewise
    ctx = _file_context(out_path, executor, ray_address)
    return run_on_file(stage, in_path, out_path, ctx)


def run_decontaminate_file(in_path: str | Path | Sequence[str | Path], out_path: str | Path,
                           evals: str | Path | EvalInput | Sequence[str | Path | EvalInput], *,
                           threshold: float = 95.0, ngram: int = 8, ngram_max_train_rows: int | None = None,
                           ngram_min_share: float | None = None, executor: str | ExecutorConfig | None = None,
                           ray_address: str | None = None) -> dict[str, Any]:
    """Remove rows that match any eval item (question stem + option set, or the stem with most of
    the options; fuzzy ratio >= `threshold`; a word `ngram` check beside it, 0: off, with a build
    config's `ngram_max_train_rows` and `ngram_min_share`, None: their defaults). `evals`: one or
    more EvalInputs or strings NAME, NAME=LOCAL_FILE, or a file. Returns the stage statistics."""
    if isinstance(evals, (str, Path, EvalInput)):  # one entry: a str's characters were read as set names
        evals = [evals]
    if not evals:
        raise UserError("decontamination needs at least one eval set (evals=[] compares the rows with nothing)")
    inputs = [e if isinstance(e, EvalInput) else EvalInput.parse(str(e)) for e in evals]
    eval_files = [Path(e.path or e.name) for e in inputs if e.path or Path(e.name).exists()]
    in_paths = [in_path] if isinstance(in_path, (str, Path)) else list(in_path)
    refuse_overwrite([*in_paths, *eval_files], out_path)  # an eval file is an input too
    ngram_settings = {"ngram_max_train_rows": ngram_max_train_rows, "ngram_min_share": ngram_min_share}
    config = DecontaminateConfig(threshold=threshold, ngram=ngram,
                                 **{k: v for k, v in ngram_settings.items() if v is not None})
    stage = Decontaminate(config, inputs)  # its settings checked before Ray starts
    ctx = _file_context(out_path, executor, ray_address)
    return run_on_file(stage, in_path, out_path, ctx)


def stage_runtime(config: Any, *, request_attempts: int | None = None, **given: Any) -> LLMRuntime:
    """An LLM stage's runtime (`config`: the stage's settings, or their class for its defaults:
    traces wait longer than students) with the `given` fields over it; None (and False) leave a
    field as it is. `request_attempts` sets the retry policy's tries per request. The `runtime`
    argument the `run_*_file` runners of LLM stages take."""
    runtime = (config() if isinstance(config, type) else config).runtime
    chosen = {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None and v is not False}
    if request_attempts is not None:
        chosen["retries"] = dataclasses.replace(runtime.retries, max_attempts=request_attempts)
    return dataclasses.replace(runtime, **chosen)



