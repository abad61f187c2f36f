"""The ray executor gives the local runner's results: the same removals from the fuzzy matcher on
real rows, and the same rows, dropped rows, manifests and Hub folder from a whole m1K build
(every stage, the LLM ones against a local OpenAI-compatible server); a build started on Ray
resumes locally without re-sending anything.

One local Ray instance (2 CPUs, no dashboard, no external service) serves the whole module; the
module skips when the `ray` extra is not installed.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from llm_server import ScriptedServer
from test_build_e2e import make_handler, truth_by_prompt, write_config
from test_dedup import char_edits, medqa_questions, mmlu_questions, planted
from typer.testing import CliRunner

from m1data.cli import app
from m1data.distributed import ExecutorConfig, MissingExtra, RayExecutor, group_bands, require_ray, sum_stats
from m1data.fuzzy import EvalText, find_contamination, find_duplicates
from m1data.pipeline import file_digest, read_manifests


pytestmark = pytest.mark.xdist_group("ray")  # one Ray instance per test run (conftest.ray_cluster)


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
    with pytest.raises(ConfigError, match="--ray-address goes with --executor ray"):
        build_settings("m1k", None, "local", "auto")


def test_file_commands_refuse_a_ray_address_without_ray(tmp_path):
    for command in (["dedup"], ["decontaminate", "--eval", "medqa_test"]):
        result = CliRunner().invoke(app, [*command, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"),
                                          "--ray-address", "auto"])
        assert result.exit_code != 0
        assert "--ray-address goes with --executor ray" in str(result.exception or result.output)
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
    from m1data.dedup import decontaminate
    from m1data.sources import load_source

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
    from m1data.readers import write_rows
    from m1data.sources import load_source

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
    of the first Ray run) and finished locally."""
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
        build(tmp / "mixed", config, "--executor", "ray", "--until", "traces")
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
        manifest_a = json.loads((a / "manifest.json").read_text())
        manifest_b = json.loads((b / "manifest.json").read_text())
        assert without_times(manifest_a) == without_times(manifest_b), a.name


def test_hub_folder_funnel_and_lineage_identical(builds):
    local, ray = builds["dir"] / "local", builds["dir"] / "ray"
    files = sorted(p.relative_to(local / "hub") for p in (local / "hub").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(ray / "hub") for p in (ray / "hub").rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".parquet":
            assert file_digest(local / "hub" / rel) == file_digest(ray / "hub" / rel), rel
    from m1data.funnel import funnel_markdown, lineage

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
