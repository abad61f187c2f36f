"""In-process models on Ray workers: a stage whose student says `base_url: vllm` travels to the
workers as its config, each worker builds its own vLLM engine once and keeps it for every block,
and the rows, dropped rows and statistics equal a local run's.

vLLM needs CUDA, so the engine under test is m1data's real VLLMEngine over a test double of the
`vllm` package (tests/fake_vllm), put on the path of this process and of the Ray workers. The
module skips without the `ray` extra."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from stage_doubles import Given

from m1data.llm.stages import LLMRuntime
from m1data.running.pipeline import (
    load_stage_dropped,
    read_manifests,
    run_pipeline,
)
from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig
from m1data.stages.loading import LoadConfig, LoadSources

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
def executor(fake_vllm):
    from m1data.running.distributed import ExecutorConfig, RayExecutor

    return RayExecutor(ExecutorConfig(kind="ray", rows_per_block=10))


def stages(rows):
    student = StudentConfig("fake/Qwen-7B", "vllm", short="qwen7b")
    config = DifficultyConfig(students=[student], max_tokens=32, runtime=LLMRuntime(progress=False))
    return [Given(rows), DifficultyFilter(config)]


def engines_built(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_vllm_students_build_one_engine_per_worker_and_match_a_local_run(fake_vllm, executor, tmp_path):
    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(60))

    local = run_pipeline(stages(rows), tmp_path / "local")
    assert engines_built(fake_vllm) == [str(os.getpid())]  # one engine, here
    fake_vllm.unlink()

    on_ray = run_pipeline(stages(rows), tmp_path / "ray", executor=executor)
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
