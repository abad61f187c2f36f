"""The ray executor gives the local runner's results: the same removals from the fuzzy matcher on
real rows, and the same rows, dropped rows, manifests and Hub folder from a whole m1K build
(every stage, the LLM ones against a local OpenAI-compatible server); a build started on Ray
resumes locally without re-sending anything.

Also on Ray: vLLM students (a test double of the package) and an eval file's decontamination door.
Every test that starts Ray lives in this file, so that under `pytest -n 2 --dist loadfile` one
worker starts the one local Ray instance (2 CPUs, no dashboard, no external service; conftest's
`ray_cluster`) for all of them. The module skips when the `ray` extra is not installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import datasets
import pytest
import test_decontamination_doors as doors
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_server import Received, Response, ScriptedServer, chat, error
from stage_doubles import Given, LosesTrack
from test_build_e2e import make_handler, truth_by_prompt, write_config
from test_cli import main  # noqa: F401 (the fixture: the installed entry point, in this process)
from test_dedup import char_edits, medqa_questions, mmlu_questions, planted
from test_eval_doors import converted_lettered, make_items, reference_removed, training_rows
from test_layout_properties import check_rows as check_layout_rows
from test_layout_properties import files as layout_files
from test_layout_properties import mapping_of as layout_mapping
from test_layout_properties import write_source as write_layout
from typer.testing import CliRunner

from m1data.cli import app
from m1data.errors import M1DataError
from m1data.running.distributed import (
    ExecutorConfig,
    MissingExtra,
    RayExecutor,
    a_ray_token_where_home_cannot_hold_one,
    group_bands,
    require_ray,
    sum_stats,
)
from m1data.llm.stages import LLMRuntime
from m1data.running.pipeline import (
    RunContext,
    Stage,
    StageFailed,
    StageResult,
    file_digest,
    load_stage_dropped,
    read_manifests,
    run_pipeline,
)
from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig
from m1data.stages.fuzzy import EvalText, find_contamination, find_duplicates
from m1data.stages.loading import LoadConfig, LoadSources


@pytest.fixture(scope="module")
def executor(ray_cluster):
    return RayExecutor(ExecutorConfig(kind="ray"))


# ------------------------------------------------------------------ no ray needed


def test_missing_extra_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    with pytest.raises(MissingExtra, match=r"pip install 'm1data\[ray\]'"):
        require_ray()
    from m1data import cli

    monkeypatch.setattr(sys, "argv", ["m1data", "build", "m1k", "--out", str(tmp_path / "r"), "--executor", "ray"])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "m1data[ray]" in err and len(err.splitlines()) <= 2  # rich may wrap the one line
    assert not (tmp_path / "r").exists()  # nothing ran


@pytest.mark.parametrize("given", ["missing.parquet", "rows.txt"])
@pytest.mark.parametrize("command", [["dedup"], ["decontaminate", "--eval", "medqa_test"]])
def test_a_bad_input_with_executor_ray_is_the_local_error_before_ray_starts(tmp_path, monkeypatch, main, given,
                                                                          command):
    """`--executor ray` joined (or started: some 4 s and its log lines) Ray before the input was
    read, so a missing or wrong file cost a Ray start before the one line the local run gives at
    once. The extra is still checked first; Ray is joined only when the stage first uses it."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'm1data[ray]')")
    import m1data.running.distributed as distributed

    joined = []
    monkeypatch.setattr(distributed, "connect", joined.append)
    (tmp_path / "rows.txt").write_text("not rows\n")
    said = {}
    for executor in ("local", "ray"):
        proc = main(*command, tmp_path / given, tmp_path / "out" / "rows.parquet", "--executor", executor)
        said[executor] = (proc.returncode, " ".join(proc.stderr.split()))
    assert said["ray"] == said["local"] and said["ray"][0] == 2 and str(tmp_path / given) in said["ray"][1]
    assert joined == [] and not (tmp_path / "out").exists()


def test_executor_from_yaml_and_command_line(tmp_path):
    from m1data.config import ConfigError
    from m1data.jobs import build_settings

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"executor": {"kind": "ray", "address": "auto", "workers": 8},
                                    "sample": {"n": 5}}))
    cfg, ex = build_settings("m1k", path)
    assert (cfg.sample.n, ex.kind, ex.address, ex.workers) == (5, "ray", "auto", 8)
    _, ex = build_settings("m1k", path, "local", None)
    assert ex.kind == "local"
    path.write_text(yaml.safe_dump({"executor": {"kind": "ray", "adress": "auto"}}))
    with pytest.raises(ConfigError, match="adress"):
        build_settings("m1k", path)
    with pytest.raises(ConfigError, match="goes with the ray executor"):
        build_settings("m1k", None, "local", "auto")
    path.write_text("executor: ray\n")  # short for {kind: ray}; it said "unknown key(s) a, r, y"
    assert build_settings("m1k", path)[1] == ExecutorConfig(kind="ray")
    path.write_text("executor: [ray]\n")
    with pytest.raises(ConfigError, match="c.yaml:executor: expected a mapping of ExecutorConfig's settings, got list"):
        build_settings("m1k", path)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["num_cpus", "workers", "rows_per_block", "gpus_per_worker"]), value=st.integers(-9, 0))
def test_executor_settings_below_their_least_are_one_line_at_every_door(tmp_path_factory, name, value):
    """`workers: 0` and `rows_per_block: 0` fell through to the defaults in silence, and a negative
    `workers` or `num_cpus` was handed on to Ray unchecked. From Python, a
    config mapping, and a config file on the command line, each is now the same line before anything
    runs; a value at or above the least is taken as given."""
    import m1data
    from m1data.errors import UserError
    from m1data.running.distributed import ExecutorConfig

    value = value - 1 if name == "gpus_per_worker" and value == 0 else value  # no GPU is allowed
    tmp = tmp_path_factory.mktemp("executor")
    with pytest.raises(UserError) as raised:
        ExecutorConfig(kind="ray", **{name: value})
    line = str(raised.value)
    assert line.startswith(f"executor.{name} must be") and str(value) in line
    with pytest.raises(UserError) as from_mapping:
        m1data.build("m1k", tmp / "out", config={"executor": {"kind": "ray", name: value}})
    assert str(from_mapping.value) == f"config.executor: {line}"
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump({"executor": {"kind": "ray", name: value}}), encoding="utf-8")
    result = CliRunner().invoke(app, ["build", "m1k", "--config", str(path), "--out", str(tmp / "out")])
    assert result.exit_code == 2 and f"{path}:executor: {line}" in " ".join(result.output.split()), result.output
    assert not (tmp / "out").exists()
    assert getattr(ExecutorConfig(kind="ray", **{name: 1 - value}), name) == 1 - value


def test_file_commands_refuse_a_ray_address_without_ray(tmp_path):
    for command in (["dedup"], ["decontaminate", "--eval", "medqa_test"]):
        result = CliRunner().invoke(app, [*command, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"),
                                          "--ray-address", "auto"])
        assert result.exit_code != 0
        assert "goes with the ray executor (--executor ray)" in str(result.exception or result.output)
    assert not list(tmp_path.iterdir())  # refused before reading or writing anything


def test_band_groups_cover_every_band_once_and_balance_cost():
    costs = [100] * 10 + [1] * 90
    groups = group_bands(costs, 4)
    assert [i for a, b in groups for i in range(a, b)] == list(range(100))
    assert max(sum(costs[a:b]) for a, b in groups) <= 2 * (sum(costs) / 4)
    assert group_bands([], 4) == [] and group_bands([5], 4) == [(0, 1)]


def test_block_statistics_sum_and_refuse_what_cannot_be_summed():
    parts = [{"model": "m", "sent": 2, "cost": 0.5, "outcomes": {"ok": 2}},
             {"model": "m", "sent": 3, "cost": None, "outcomes": {"ok": 1, "length": 1}}]
    assert sum_stats(parts) == {"model": "m", "sent": 5, "cost": None, "outcomes": {"ok": 3, "length": 1}}
    with pytest.raises(ValueError, match="method"):
        sum_stats([{"method": "a"}, {"method": "b"}])


# ------------------------------------------------------------------ fuzzy matcher on real rows


def test_dedup_on_ray_equals_local_on_real_rows(executor, shared_data):
    texts = planted(medqa_questions(shared_data, 1300) + mmlu_questions(shared_data, 1200), seed=5)
    local = find_duplicates(texts)
    assert len(local) >= 40  # planted copies found
    assert find_duplicates(texts, runner=executor.band_runner) == local


def test_decontamination_on_ray_equals_local_on_real_rows(executor, shared_data):
    evq = mmlu_questions(shared_data, 1500)
    evals = [EvalText("mmlu", str(i), q) for i, q in enumerate(evq)]
    rng = random.Random(2)
    train = medqa_questions(shared_data, 1273)
    train += [char_edits(q, rng.choice([1, 3, 8, 30]), rng) for q in rng.sample(evq, 80)]
    rng.shuffle(train)
    local = find_contamination(train, evals)
    assert len(local) >= 40
    assert find_contamination(train, evals, runner=executor.band_runner) == local


def test_dataset_decontamination_on_ray_equals_local(executor, shared_data):
    """MedQA's 4-option test rows against its 5-option release: stems and option sets."""
    from m1data.reading.sources import load_source
    from m1data.stages.dedup import decontaminate

    rows = load_source("medqa", str(shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl")).rows
    five = load_source("medqa", str(shared_data / "raw/medqa/US_test_5_options.jsonl")).rows
    kept, removed = decontaminate(rows, {"medqa5": five})
    kept_r, removed_r = decontaminate(rows, {"medqa5": five}, runner=executor.band_runner)
    assert len(removed) > 100
    assert kept_r["id"] == kept["id"] and removed_r.to_list() == removed.to_list()


# ------------------------------------------------------------------ the file commands


MEDQA = "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
MEDQA5 = "raw/medqa/US_test_5_options.jsonl"  # the same exam with a fifth option: near copies
HEADQA = "raw/headqa/dev_HEAD_EN.json"


@pytest.fixture
def file_rows(shared_data, tmp_path):
    """Real rows as files: `dedup.parquet` (150 MedQA questions, 150 of the 5-option release of
    which 50 are the same questions, 100 HeadQA) and `train.parquet` (150 of the 5-option
    release, 150 HeadQA) to check against MedQA's 4-option test set."""
    from m1data.reading.readers import write_rows
    from m1data.reading.sources import load_source

    tmp = tmp_path / "in"
    tmp.mkdir()
    four = load_source("medqa", str(shared_data / MEDQA)).rows
    five = load_source("medqa", str(shared_data / MEDQA5)).rows
    headqa = load_source("headqa", str(shared_data / HEADQA)).rows.select_columns(four.column_names)
    write_rows(datasets.concatenate_datasets([four.select(range(150)), five.select(range(100, 250)),
                                              headqa.select(range(100))]), tmp / "dedup.parquet")
    write_rows(datasets.concatenate_datasets([five.select(range(150)), headqa.select(range(100, 250))]),
               tmp / "train.parquet")
    return tmp


def run_command(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def count_band_runs(monkeypatch) -> list[int]:
    """The number of band lists the Ray executor was given, to show the command ran on Ray."""
    calls: list[int] = []
    original = RayExecutor.band_runner

    def counted(self, job, bands):
        calls.append(len(bands))
        return original(self, job, bands)

    monkeypatch.setattr(RayExecutor, "band_runner", counted)
    return calls


def same_files(a: Path, b: Path) -> None:
    """The same bytes, and (said more readably when they differ) the same rows."""
    rows_a, rows_b = datasets.Dataset.from_parquet(str(a)), datasets.Dataset.from_parquet(str(b))
    assert rows_a.to_list() == rows_b.to_list(), a.name
    assert file_digest(a) == file_digest(b), a.name


def test_dedup_command_on_ray_writes_the_local_files(executor, file_rows, tmp_path, monkeypatch):
    rows = file_rows / "dedup.parquet"
    run_command(["dedup", str(rows), str(tmp_path / "local.parquet")])
    calls = count_band_runs(monkeypatch)
    run_command(["dedup", str(rows), str(tmp_path / "ray.parquet"), "--executor", "ray"])
    assert calls and sum(calls) > 0  # the bands went to Ray tasks
    removed = datasets.Dataset.from_parquet(str(tmp_path / "local.dropped.parquet"))
    assert 40 <= len(removed) < 150  # the 5-option copies, not the HeadQA rows
    same_files(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    same_files(tmp_path / "local.dropped.parquet", tmp_path / "ray.dropped.parquet")


def test_decontaminate_command_on_ray_writes_the_local_files(executor, file_rows, shared_data, tmp_path,
                                                             monkeypatch):
    train, evals = file_rows / "train.parquet", f"medqa_test={shared_data / MEDQA}"
    run_command(["decontaminate", str(train), str(tmp_path / "local.parquet"), "--eval", evals])
    calls = count_band_runs(monkeypatch)
    run_command(["decontaminate", str(train), str(tmp_path / "ray.parquet"), "--eval", evals, "--executor", "ray"])
    assert calls and sum(calls) > 0
    removed = datasets.Dataset.from_parquet(str(tmp_path / "local.dropped.parquet"))
    assert 100 <= len(removed) <= 150 and set(removed["source"]) == {"medqa"}
    same_files(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    same_files(tmp_path / "local.dropped.parquet", tmp_path / "ray.dropped.parquet")


# ------------------------------------------------------------------ a whole build


def build(run: Path, config: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["build", "m1k", "--out", str(run), "--config", str(config), *extra])
    assert result.exit_code == 0, result.output


def copy_stage_caches(source: Path, target: Path, stages: tuple[str, ...]) -> None:
    for cache in source.glob("cache/*/llm_cache.sqlite*"):  # caches live beside the stage folders
        if cache.parent.name not in stages:
            continue
        (target / "cache" / cache.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(cache, target / "cache" / cache.parent.name / cache.name)


def stage_dirs(run: Path) -> list[Path]:
    return sorted(p for p in run.iterdir() if p.is_dir() and p.name[:2].isdigit())


def without_times(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "wall_time_s"}


@pytest.fixture(scope="module")
def builds(executor, tmp_path_factory):
    """The embedded m1K build under each executor, and one started on Ray (over the LLM caches
    of the first Ray run) and finished locally. That run starts from the first Ray run's first
    three stages (Ray already ran them above), so only the LLM stages run on Ray again."""
    tmp = tmp_path_factory.mktemp("executors")
    with ScriptedServer(make_handler(truth_by_prompt())) as server:
        config = write_config(tmp / "config.yaml", server.base_url, n=20)
        build(tmp / "local", config)
        local_sent = server.count()
        build(tmp / "ray", config, "--executor", "ray")
        ray_sent = server.count() - local_sent
        # a fresh run holding the caches the Ray workers wrote for the LLM stages up to traces:
        # run on Ray until traces (a re-run: nothing to send), then finished locally
        copy_stage_caches(tmp / "ray", tmp / "mixed", ("03_difficulty", "04_traces"))
        for stage in stage_dirs(tmp / "ray")[:3]:  # load, dedup, decontaminate, as Ray wrote them
            shutil.copytree(stage, tmp / "mixed" / stage.name)
        build(tmp / "mixed", config, "--executor", "ray", "--from", "difficulty", "--until", "traces")
        rerun_sent = server.count() - local_sent - ray_sent
        before = {m["stage"]: m for m in read_manifests(tmp / "mixed")}
        build(tmp / "mixed", config)
        resumed_sent = server.count() - local_sent - ray_sent - rerun_sent
    return {"dir": tmp, "local_sent": local_sent, "ray_sent": ray_sent, "resumed_sent": resumed_sent,
            "mixed_before": before, "rerun_sent": rerun_sent}


def test_build_stages_identical_under_both_executors(builds):
    local, ray = builds["dir"] / "local", builds["dir"] / "ray"
    assert [p.name for p in stage_dirs(ray)] == [p.name for p in stage_dirs(local)]
    assert len(stage_dirs(local)) == 10  # load ... format, sample: every stage ran
    for a, b in zip(stage_dirs(local), stage_dirs(ray), strict=True):
        assert file_digest(a / "rows.parquet") == file_digest(b / "rows.parquet"), a.name
        assert (a / "dropped.parquet").exists() == (b / "dropped.parquet").exists(), a.name
        if (a / "dropped.parquet").exists():
            dropped_a = datasets.Dataset.from_parquet(str(a / "dropped.parquet"))
            dropped_b = datasets.Dataset.from_parquet(str(b / "dropped.parquet"))
            assert dropped_a.to_list() == dropped_b.to_list(), a.name
        manifest_a = json.loads((a / "manifest.json").read_text(encoding="utf-8"))
        manifest_b = json.loads((b / "manifest.json").read_text(encoding="utf-8"))
        assert without_times(manifest_a) == without_times(manifest_b), a.name


def test_hub_folder_funnel_and_lineage_identical(builds):
    local, ray = builds["dir"] / "local", builds["dir"] / "ray"
    files = sorted(p.relative_to(local / "hub") for p in (local / "hub").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(ray / "hub") for p in (ray / "hub").rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".parquet":
            assert file_digest(local / "hub" / rel) == file_digest(ray / "hub" / rel), rel
    from m1data.running.funnel import funnel_markdown, lineage

    assert funnel_markdown(local) == funnel_markdown(ray)
    loaded = datasets.Dataset.from_parquet(str(local / "00_load" / "rows.parquet"))["id"]
    for row_id in loaded[::7]:  # kept to the end, or dropped somewhere with a reason
        assert lineage(local, row_id) == lineage(ray, row_id), row_id


def test_ray_build_asks_what_local_asks_and_a_rerun_pays_nothing(builds):
    """Each run has its own cache, so the ray run asks exactly what the local run asked; the LLM
    stages re-run on Ray over a cache the Ray workers wrote send nothing."""
    assert builds["local_sent"] > 0 and builds["ray_sent"] == builds["local_sent"]
    assert builds["rerun_sent"] == 0
    again = builds["mixed_before"]
    for stage in ("difficulty", "traces"):
        assert again[stage]["stats"]["sent"] == 0 and again[stage]["stats"]["cached"] > 0


def test_run_started_on_ray_resumes_locally(builds):
    mixed, local = builds["dir"] / "mixed", builds["dir"] / "local"
    before = builds["mixed_before"]
    after = {m["stage"]: m for m in read_manifests(mixed)}
    assert list(before) == ["load", "dedup", "decontaminate", "difficulty", "traces"]
    for stage in before:  # skipped, not re-run: the manifests written on Ray are untouched
        assert after[stage] == before[stage], stage
    for a, b in zip(stage_dirs(local), stage_dirs(mixed), strict=True):
        assert file_digest(a / "rows.parquet") == file_digest(b / "rows.parquet"), a.name
    # the local continuation only asked the tagger (the stage after traces that calls a model)
    assert 0 < builds["resumed_sent"] < builds["local_sent"]
    assert builds["resumed_sent"] == after["tag"]["stats"]["sent"]


# ------------------------------------------------------------------ faults on Ray (issue 23, items 1 and 2)


N_FAULT_ROWS = 16


@dataclass
class FaultRowsConfig:
    n: int = N_FAULT_ROWS


class FaultRows(Stage):
    """The first stage of the fault builds: fixed question rows (runs on the driver)."""

    name = "rows"
    reads_rows = True

    def __init__(self, config: FaultRowsConfig | None = None):
        self.config = config or FaultRowsConfig()

    def run(self, rows, ctx):
        from test_pipeline_llm import question_rows

        return StageResult(rows=question_rows(self.config.n))


@dataclass
class FaultBuildConfig:
    """A two-stage build (rows, then a one-student difficulty filter) for the fault tests."""

    rows: FaultRowsConfig = dc_field(default_factory=FaultRowsConfig)
    difficulty: DifficultyConfig = dc_field(default_factory=DifficultyConfig)


def fault_stages(cfg: FaultBuildConfig) -> list[Stage]:
    return [FaultRows(cfg.rows), DifficultyFilter(cfg.difficulty)]


class Student:
    """A scripted student: right on `solved` prompts (those rows are dropped), wrong on the rest
    (kept), and 503 on every attempt at the prompts in `failing` (a set the test empties)."""

    def __init__(self, solved: set[str], failing: set[str]):
        from test_pipeline_llm import question_rows

        rows = question_rows(N_FAULT_ROWS)
        self.truth = {p: "ABCD"[a] for p, a in zip(rows["prompt"], rows["answer_idx"], strict=True)}
        self.solved, self.failing = solved, failing

    def __call__(self, req: Received) -> Response:
        prompt = req.text.split("\n", 1)[1]
        if prompt in self.failing:
            return error(503, "overloaded")
        right = self.truth[prompt]
        answer = right if prompt in self.solved else "ABCD"[("ABCD".index(right) + 1) % 4]
        return chat(f"The answer is \\boxed{{{answer}}}.")


def fault_config(path: Path, url: str, executor: str, rows_per_block: int = 4) -> Path:
    student = {"model": "student", "base_url": url, "short": "student"}
    runtime = {"progress": False, "retries": {"max_attempts": 2, "base_delay": 0.01}}
    path.write_text(yaml.safe_dump({"executor": {"kind": executor, "rows_per_block": rows_per_block},
                                    "difficulty": {"students": [student], "runtime": runtime}}))
    return path


@pytest.fixture
def fault_build(monkeypatch):
    from m1data.builders import BUILDERS

    monkeypatch.setitem(BUILDERS, "m23k", dataclasses.replace(BUILDERS["m23k"], config=FaultBuildConfig,
                                                              stages=fault_stages))

    def run(run_dir: Path, config: Path):
        return CliRunner().invoke(app, ["build", "m23k", "--out", str(run_dir), "--config", str(config)])

    return run


def difficulty_outputs(run_dir: Path) -> tuple[str, list[dict]]:
    stage = run_dir / "01_difficulty"
    return file_digest(stage / "rows.parquet"), datasets.Dataset.from_parquet(str(stage / "dropped.parquet")).to_list()


def test_transient_failures_on_ray_leave_the_stage_incomplete_and_a_rerun_sends_exactly_them(
        executor, fault_build, tmp_path):
    """Issue 23 item 1: a student answering 503 to some requests on Ray stops the build (exit 1)
    with the stage incomplete; the re-run sends exactly those requests and ends with the rows of
    a local build that never failed."""
    from test_pipeline_llm import question_rows

    prompts = question_rows(N_FAULT_ROWS)["prompt"]
    failing = {prompts[1], prompts[6], prompts[13]}  # in three different blocks of 4
    student = Student(solved=set(prompts[::3]), failing=set())
    with ScriptedServer(student) as server:
        local = fault_build(tmp_path / "local", fault_config(tmp_path / "local.yaml", server.base_url, "local"))
        assert local.exit_code == 0, local.output
        local_sent = server.count()
        student.failing = set(failing)
        ray_config = fault_config(tmp_path / "ray.yaml", server.base_url, "ray")

        first = fault_build(tmp_path / "ray", ray_config)
        assert first.exit_code == 1, first.output
        assert "3 requests failed transiently" in " ".join(first.output.split())
        manifest = read_manifests(tmp_path / "ray")[-1]
        assert manifest["stage"] == "difficulty"
        assert (manifest["complete"], manifest["transient_failures"], manifest["stats"]["failed"]) == (False, 3, 3)
        assert not (tmp_path / "ray" / "hub").exists()
        sent = server.count()
        assert sent - local_sent == N_FAULT_ROWS - 3 + 3 * 2  # each failing one tried twice

        student.failing.clear()
        again = fault_build(tmp_path / "ray", ray_config)
        assert again.exit_code == 0, again.output
        resent = [r.text.split("\n", 1)[1] for r in server.requests[sent:]]
        assert sorted(resent) == sorted(failing)  # exactly the failed ones; the cache answers the rest
    manifest = read_manifests(tmp_path / "ray")[-1]
    assert manifest["complete"] is True and manifest["transient_failures"] == 0
    assert difficulty_outputs(tmp_path / "ray") == difficulty_outputs(tmp_path / "local")


def test_a_block_that_keeps_no_rows_on_ray_gives_the_local_result(executor, fault_build, tmp_path):
    """Issue 23 item 2: the student solves every question of the first block of 4, so that
    block keeps no rows; the build on Ray completes with the local build's rows and drops."""
    from test_pipeline_llm import question_rows

    prompts = question_rows(N_FAULT_ROWS)["prompt"]
    student = Student(solved=set(prompts[:4]) | {prompts[9]}, failing=set())
    with ScriptedServer(student) as server:
        for name in ("local", "ray"):
            result = fault_build(tmp_path / name, fault_config(tmp_path / f"{name}.yaml", server.base_url, name))
            assert result.exit_code == 0, result.output
    manifest = read_manifests(tmp_path / "ray")[-1]
    assert manifest["rows_out"] == N_FAULT_ROWS - 5 and manifest["complete"] is True
    assert difficulty_outputs(tmp_path / "ray") == difficulty_outputs(tmp_path / "local")


# ------------------------------------------------------------------ a stage's state on pooled task workers


class BuiltOnce(Stage):
    """Row-parallel, and builds its (pretend) model on its first block: each build is logged
    with the process that made it."""

    name = "built_once"
    row_parallel = True

    def __init__(self, log: Path):
        self.config, self.log, self._model = None, log, None

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def run(self, rows, ctx):
        if self._model is None:
            self._model = os.getpid()
            with self.log.open("a") as f:
                f.write(f"{os.getpid()}\n")
        return StageResult(rows=rows.map(lambda row: {"prompt": row["prompt"] + "!"}))


def test_a_stage_on_task_workers_is_built_once_per_worker_and_rebuilt_for_the_next_stage(ray_cluster, tmp_path):
    """A stage that holds no in-process model runs as Ray tasks (no actor pool to start); each
    worker process still builds the stage's state once for all its blocks, and the next stage
    run gets a fresh one."""
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[BuiltOnce.__module__])  # workers cannot import tests
    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(40))
    executor = RayExecutor(ExecutorConfig(kind="ray", rows_per_block=5))  # 8 blocks
    ctx = RunContext(tmp_path, tmp_path)
    builds = []
    for run in range(2):
        log = tmp_path / f"built{run}.log"
        result = executor.run_stage(BuiltOnce(log), rows, ctx)
        assert result.rows["prompt"] == [p + "!" for p in rows["prompt"]]
        builds.append(log.read_text(encoding="utf-8").split())
        assert 1 <= len(builds[-1]) <= 2 and len(set(builds[-1])) == len(builds[-1])  # once per worker
        assert str(os.getpid()) not in builds[-1]


def test_a_stage_that_loses_rows_on_ray_is_refused_and_not_recorded(ray_cluster, tmp_path):
    """The accounting check sits where every executor's result is recorded: a row-parallel stage
    that loses the last row of each of its blocks on Ray is refused in one line with its
    counts, and the run folder has no record of it."""
    import ray
    import stage_doubles

    ray.cloudpickle.register_pickle_by_value(stage_doubles)  # workers cannot import tests
    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(12))
    executor = RayExecutor(ExecutorConfig(kind="ray", rows_per_block=4))  # 3 blocks, 3 rows lost
    with pytest.raises(StageFailed, match=r"^stage 'faulty' does not account for its rows: 12 in, 9 kept \+ 0 "
                                          r"dropped; 3 neither kept nor dropped"):
        run_pipeline([Given(rows), LosesTrack("lose")], tmp_path, executor=executor)
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["given"]
    assert not (tmp_path / "01_faulty" / "manifest.json").exists()


# ------------------------------------------------------------------ in-process models on Ray workers
# A stage whose student says `base_url: vllm` travels to the
# workers as its config, each worker builds its own vLLM engine once and keeps it for every block,
# and the rows, dropped rows and statistics equal a local run's.
#
# vLLM needs CUDA, so the engine under test is m1data's real VLLMEngine over a test double of the
# `vllm` package (tests/fake_vllm), put on the path of this process and of the Ray workers.

FAKE = Path(__file__).parents[1] / "fake_vllm"


@pytest.fixture(scope="module")
def fake_vllm(ray_cluster):
    """The vllm test double importable here, as it is in every Ray worker (conftest.ray_cluster);
    each engine built, here or there, is logged with its process id to the file yielded."""
    saved = os.environ.get("FAKE_VLLM_LOG")
    os.environ["FAKE_VLLM_LOG"] = str(ray_cluster)
    sys.path.insert(0, str(FAKE))
    try:
        yield ray_cluster
    finally:
        sys.path.remove(str(FAKE))
        for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
            del sys.modules[name]
        if saved is None:
            os.environ.pop("FAKE_VLLM_LOG", None)
        else:
            os.environ["FAKE_VLLM_LOG"] = saved


@pytest.fixture(scope="module")
def vllm_executor(fake_vllm):
    return RayExecutor(ExecutorConfig(kind="ray", rows_per_block=10))


def vllm_stages(rows):
    student = StudentConfig("fake/Qwen-7B", "vllm", short="qwen7b")
    config = DifficultyConfig(students=[student], max_tokens=32, runtime=LLMRuntime(progress=False))
    return [Given(rows), DifficultyFilter(config)]


def engines_built(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").split() if log.exists() else []


def test_vllm_students_build_one_engine_per_worker_and_match_a_local_run(fake_vllm, vllm_executor, tmp_path):
    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(60))

    local = run_pipeline(vllm_stages(rows), tmp_path / "local")
    assert engines_built(fake_vllm) == [str(os.getpid())]  # one engine, here
    fake_vllm.unlink()

    on_ray = run_pipeline(vllm_stages(rows), tmp_path / "ray", executor=vllm_executor)
    workers = engines_built(fake_vllm)
    # 6 blocks of 10 rows went to at most 2 workers, and no worker built its engine twice
    assert 1 <= len(workers) <= 2 and len(set(workers)) == len(workers)
    assert str(os.getpid()) not in workers

    assert on_ray.to_list() == local.to_list()
    assert 0 < len(local) < len(rows)  # the double answers some questions right, some wrong
    dropped = [load_stage_dropped(tmp_path / run / "01_difficulty").to_list() for run in ("local", "ray")]
    assert dropped[0] == dropped[1]
    stats = [read_manifests(tmp_path / run)[1]["stats"] for run in ("local", "ray")]
    assert stats[0]["sent"] == stats[1]["sent"] == len(rows)
    assert stats[0]["students"] == stats[1]["students"]


# ------------------------------------------------------------------ an eval file's door on Ray (issue 24)


def test_ray_door_agrees(tmp_path, ray_cluster):
    """On the test process's one Ray instance (conftest), which the command joins."""
    items = make_items(3, 8)
    _, spec = converted_lettered(items, tmp_path)
    train, planted = training_rows(items, 3)
    src, out = tmp_path / "train.jsonl", tmp_path / "kept.jsonl"
    train.to_json(str(src), lines=True)
    result = CliRunner().invoke(app, ["decontaminate", str(src), str(out), "--eval", spec, "--ngram", "0",
                                      "--executor", "ray"])
    assert result.exit_code == 0, result.output
    kept = {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()}
    assert set(train["id"]) - kept == reference_removed(train, items) >= planted


def test_ray_removes_the_copies_of_broken_key_items_with_the_local_records(tmp_path, ray_cluster):
    """An eval file whose keys are out of range, contradicted or missing, and training copies in
    other case, spacing and Unicode forms: `--executor ray` drops the rows the local run drops,
    each with the same reason and eval item (tests/stages/test_decontamination_doors.py, one case)."""
    case = doors.fixed_case()
    spec = f"mine={doors.write_eval_file(case, tmp_path)}"
    rows, copied = doors.training_rows(case)
    train = doors.labelled(rows, "")
    src = tmp_path / "train.jsonl"
    train.to_json(str(src), lines=True, force_ascii=False)
    records = {}
    for executor in ("local", "ray"):
        out = tmp_path / f"{executor}.jsonl"
        result = CliRunner().invoke(app, ["decontaminate", str(src), str(out), "--eval", spec, "--ngram", "0",
                                          "--executor", executor])
        assert result.exit_code == 0, result.output
        lines = (tmp_path / f"{executor}.dropped.jsonl").read_text(encoding="utf-8").splitlines()
        records[executor] = sorted((r["id"], r["reason"], r["eval_set"], r["eval_id"]) for r in map(json.loads, lines))
    assert records["ray"] == records["local"]
    assert [(row, reason, eval_set, eval_id.rpartition(":")[2]) for row, reason, eval_set, eval_id in records["ray"]] \
        == sorted((row, "contaminated", "mine", item) for row, item in copied.items())
    assert {item["broken"] for item in case["items"] if f"copy-{item['id']}" in copied} >= {*doors.BROKEN, None}



# ------------------------------------------------------------------ a HOME that cannot be written

START_RAY = """
import os
from m1data.errors import UserError
from m1data.running.distributed import ExecutorConfig, RayExecutor
executor = RayExecutor(ExecutorConfig(kind="ray", num_cpus=1))
RayExecutor(ExecutorConfig(kind="ray", num_cpus=1))  # the same settings: the same Ray
try:
    RayExecutor(ExecutorConfig(kind="ray", address="127.0.0.1:1"))
except UserError as err:
    print(err)
print(executor.map(abs, [-1, -2]), os.environ["RAY_AUTH_TOKEN"])
"""

JOIN_RAY = """
import sys
from m1data.errors import UserError
from m1data.running.distributed import ExecutorConfig, RayExecutor
try:
    RayExecutor(ExecutorConfig(kind="ray", address=sys.argv[1] or None))
except UserError as err:
    print(err)
"""


@pytest.mark.parametrize("address, environ, said", [
    ("127.0.0.1:1", {}, "nothing answers at Ray address 127.0.0.1:1 (Connection refused) within 5 s"),
    ("ray://127.0.0.1:1", {}, "nothing answers at Ray address ray://127.0.0.1:1"),
    ("ray://127.0.0.1", {}, "nothing answers at Ray address ray://127.0.0.1 ("),  # Ray's client port, 10001
    ("not a host", {}, "Ray address 'not a host' is not HOST[:PORT], ray://HOST[:PORT], auto or local"),
    ("", {"RAY_ADDRESS": "127.0.0.1:1"}, "nothing answers at Ray address 127.0.0.1:1"),  # what ray.init joins
])
def test_a_ray_address_that_cannot_be_joined_is_one_line(address, environ, said):
    """Ray's connect to an address where nothing answers retried forever, deaf to SIGTERM and
    Ctrl-C, and a malformed address was a traceback. In a child process: this one may run Ray."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'm1data[ray]')")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}, **environ}
    done = subprocess.run([sys.executable, "-c", JOIN_RAY, address], capture_output=True, text=True, timeout=120,
                          env=env)
    assert said in done.stdout, done.stderr[-3000:]


def test_the_ray_executor_starts_where_home_cannot_be_written(tmp_path):
    """Ray saves the token of a cluster it starts in ~/.ray: with HOME a file, in which even root
    cannot make a folder, `ray.init` stopped with NotADirectoryError. A cluster of its own (one
    CPU) in a child process: the session's one (conftest) is already running here."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'm1data[ray]')")
    home = tmp_path / "home"
    home.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", START_RAY], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    refused, last = done.stdout.strip().splitlines()[-2:]
    results, token = last.rsplit(" ", 1)
    assert results == "[1, 2]"
    # a second job of the session asking for another Ray ran on this one, whatever it asked for
    assert refused == ("this process already runs Ray started here on 1 CPUs; a job cannot also run joined to "
                       "127.0.0.1:1: call ray.shutdown() first")
    assert len(token) == 64 and token not in done.stderr  # the token is never logged


def test_a_ray_token_is_made_only_where_home_cannot_hold_one(tmp_path):
    (tmp_path / "file").write_text("")
    environ = {"HOME": str(tmp_path / "file")}
    a_ray_token_where_home_cannot_hold_one(environ)
    first = environ.pop("RAY_AUTH_TOKEN")
    a_ray_token_where_home_cannot_hold_one(environ)
    assert len(first) == 64 and environ["RAY_AUTH_TOKEN"] != first  # a new one every cluster
    for chosen in ({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "t")}, {"RAY_AUTH_TOKEN": "mine"},
                   {"RAY_ADDRESS": "auto"}):
        environ = {"HOME": str(tmp_path / "file"), **chosen}
        a_ray_token_where_home_cannot_hold_one(environ)
        assert environ == {"HOME": str(tmp_path / "file"), **chosen}
    environ = {"HOME": str(tmp_path / "home")}  # not there yet, but it can be made
    a_ray_token_where_home_cannot_hold_one(environ)
    assert environ == {"HOME": str(tmp_path / "home")}


# ------------------------------------------------------------------ a generated source file on Ray


# 30 examples take a few seconds on a running cluster; 400 found nothing more (2026-12-03, 27 s)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=layout_files())
def test_ray_loads_generated_layouts_like_the_local_runner(generated, ray_cluster, executor, tmp_path_factory):
    """A generated file in a layout users bring (tests/reading/test_layout_properties.py), given
    twice under two names so `parallel_map` sends each to a Ray task: the same rows and dropped
    records as the local runner, and every good row read right."""
    rows, layout = generated
    folder = tmp_path_factory.mktemp("layout")
    path = write_layout(rows, layout, folder)
    mapping = layout_mapping(rows, layout)
    config = LoadConfig(sources={name: {"path": str(path), "mapping": mapping, "licence": "MIT"}
                                 for name in ("mine", "mine2")})
    results = []
    for ctx_executor in (None, executor):
        try:
            result = LoadSources(config).run(None, RunContext(folder, folder, executor=ctx_executor))
        except M1DataError as err:
            results.append(("stop", str(err).replace(str(folder), "")))
            continue
        results.append(("rows", result.rows.to_list(), result.dropped.to_list()))
    assert results[0] == results[1]
    if results[0][0] == "rows":
        mine = [r for r in results[0][1] if r["source"] == "mine"]
        check_layout_rows(rows, mine, sum(d["source"] == "mine" for d in results[0][2]))


def test_a_problem_with_a_source_file_on_ray_is_the_same_one_line_error(ray_cluster, executor, tmp_path):
    """A source read in a Ray task that stops (here: an answer column that reads two ways, 0 being
    option 1 as text and option 0 as an index) raises the same error, with the same one-line
    message, as the local runner. It came to the driver as Ray's UnserializableException
    (MalformedFile could not be unpickled), then as a RayTaskError whose message was the worker's
    traceback."""
    path = tmp_path / "qs.jsonl"
    path.write_text(json.dumps({"question": "Q0: plain", "options": ["1", "0"], "answer": 0}) + "\n",
                    encoding="utf-8")
    config = LoadConfig(sources={name: {"path": str(path), "licence": "MIT",
                                        "mapping": {"question": "question", "options": "options", "answer": "answer"}}
                                 for name in ("mine", "mine2")})
    errors = []
    for ctx_executor in (None, executor):
        with pytest.raises(M1DataError) as caught:
            LoadSources(config).run(None, RunContext(tmp_path, tmp_path, executor=ctx_executor))
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1] and "answer_kind" in errors[0][1] and "\n" not in errors[0][1]


def test_where_several_sources_fail_on_ray_the_first_ones_error_is_raised(ray_cluster, executor, tmp_path):
    """As the local runner raises it: the first source in order, not whichever task failed first
    (the larger file here fails last). Found by the layout property above."""
    sources = {}
    for name, n in (("mine", 20_000), ("mine2", 1)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"question": f"Q{i}", "options": ["a", "b"]}) + "\n" for i in range(n)),
                        encoding="utf-8")
        sources[name] = {"path": str(path), "licence": "MIT",
                         "mapping": {"question": "question", "options": "options", "answer": "answer"}}
    config = LoadConfig(sources=sources)
    for ctx_executor in (None, executor):
        with pytest.raises(M1DataError, match=r"/mine\.jsonl: the mapping names 'answer' \(answer\), which no record"):
            LoadSources(config).run(None, RunContext(tmp_path, tmp_path, executor=ctx_executor))


class Refuses(Stage):
    """Row-parallel, and stops on its first block with an error the user can fix, as an LLM
    stage whose server refuses the key does (an EndpointError) or a stage's check (a UserError)."""

    name = "refuses"
    row_parallel = True

    def __init__(self, error: type[M1DataError]):
        self.config, self.error = None, error

    def run(self, rows, ctx):
        raise self.error(f"the endpoint refused the key for {len(rows) > 0} rows: check M1DATA_API_KEY")


@pytest.mark.parametrize("name", ["UserError", "EndpointError"])
def test_a_stage_error_in_a_ray_data_task_is_the_local_one_line_error(ray_cluster, executor, tmp_path, name):
    """An m1data error raised inside a Ray Data task came to the driver wrapped in Ray's
    RayTaskError(UserCodeException), whose message is the worker's traceback: the command line
    printed "internal error" with it and exited 1. It is now raised as itself, of the same class
    (so the command line's one line and exit 2) and with the same message as locally."""
    import ray

    from m1data import errors
    from m1data.llm import runner

    error = getattr(errors, name, None) or getattr(runner, name)
    ray.cloudpickle.register_pickle_by_value(sys.modules[Refuses.__module__])  # workers cannot import tests
    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(8))
    ctx = RunContext(tmp_path, tmp_path)
    raised = []
    for run in (lambda: Refuses(error).run(rows, ctx), lambda: executor.run_stage(Refuses(error), rows, ctx)):
        with pytest.raises(M1DataError) as caught:
            run()
        raised.append((type(caught.value), str(caught.value)))
    assert raised[0] == raised[1] and raised[0][0] is error and "\n" not in raised[0][1]



class FailsFirstBlock(Stage):
    """Row-parallel: the block holding `first` stops with a UserError after `fails_after`
    seconds (the other worker is running a block by then); every other block writes its first
    row's id and the time (`time.monotonic`, one clock for every process of the machine) to
    `log` when it starts, and its id again when it ends, `seconds` later."""

    name = "fails_first_block"
    row_parallel = True

    def __init__(self, first: str, log: Path, fails_after: float, seconds: float):
        self.config, self.first, self.log = None, first, log
        self.fails_after, self.seconds = fails_after, seconds

    def run(self, rows, ctx):
        import time

        from m1data.errors import UserError

        if self.first in rows["id"]:
            time.sleep(self.fails_after)
            raise UserError("the first block's rows are wrong")
        with self.log.open("a") as f:
            f.write(f"started {rows['id'][0]} {time.monotonic()}\n")
        time.sleep(self.seconds)
        with self.log.open("a") as f:
            f.write(f"finished {rows['id'][0]}\n")
        return StageResult(rows=rows)


def test_a_block_that_fails_stops_the_stage_without_waiting_for_the_other_blocks(ray_cluster, tmp_path):
    """A block's error reached the driver only once every block had run (`take_all`): the
    worker that had not failed itself ran its block to the end (30 s here) after the stage had
    already failed, and took new ones. The error is now raised as its block returns it, and Ray
    Data stops: no other block ends, and none starts but those handed out by then (2 workers).
    The error must come before any block started beside it could have ended; timed from the
    blocks' own starts, since starting Ray's workers took 20-30 s on a loaded 2-core machine."""
    import time

    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[FailsFirstBlock.__module__])  # workers cannot import tests
    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(8))
    log = tmp_path / "blocks.log"
    stage = FailsFirstBlock(rows["id"][0], log, fails_after=6, seconds=30)
    executor = RayExecutor(ExecutorConfig(kind="ray", rows_per_block=1))
    with pytest.raises(M1DataError, match="the first block's rows are wrong"):
        executor.run_stage(stage, rows, RunContext(tmp_path, tmp_path))
    raised = time.monotonic()
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    assert not [line for line in lines if line.startswith("finished")], lines
    assert len(lines) <= 2, lines  # the block running beside the failing one, and one handed out as it failed
    assert all(raised < float(line.split()[2]) + stage.seconds for line in lines), (raised, lines)


STOP_AFTER_A_FAILED_STAGE = """
import sys, time
import ray
from m1data.errors import M1DataError, UserError
from m1data.running.distributed import ExecutorConfig, RayExecutor
from m1data.running.pipeline import RunContext, Stage, StageResult
from m1data.stages.loading import LoadConfig, LoadSources

class FailsOneBlock(Stage):
    name, row_parallel = "fails_one_block", True

    def __init__(self, first):
        self.config, self.first = None, first

    def run(self, rows, ctx):
        if self.first in rows["id"]:
            time.sleep(1)
            raise UserError("one block failed")
        time.sleep(5)
        return StageResult(rows=rows)

rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(8))
executor = RayExecutor(ExecutorConfig(kind="ray", address=sys.argv[1], rows_per_block=1))
ray.data.DataContext.get_current().enable_progress_bars = False
try:
    executor.run_stage(FailsOneBlock(rows["id"][0]), rows, RunContext(sys.argv[2], sys.argv[2]))
except M1DataError as err:
    print("stage failed:", err, flush=True)
ray.shutdown()
print("ray stopped", flush=True)
"""


def test_a_process_whose_stage_failed_on_ray_stops_ray_cleanly(ray_cluster, tmp_path):
    """With ray before 2.56 (2.51.0 and 2.55.1 tried), leaving Ray Data's iterator at a failed
    block (as `_parts_or_first_error` does) left its execution threads running; the process's
    next `ray.shutdown()` (at exit, or a notebook's own) then ended it abruptly ("The core worker
    has already been shutdown ... The process will exit": exit 1 in every run here; likely the
    segmentation fault of a CI run). 2.56 still left a thread behind, hence the extra's floor,
    2.57. A driver of its own, on the session's cluster."""
    import ray

    address = ray.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, "-c", STOP_AFTER_A_FAILED_STAGE, address, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["stage failed: one block failed", "ray stopped"], done.stdout
