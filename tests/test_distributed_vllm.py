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

from m1data.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig
from m1data.llm.stages import LLMRuntime
from m1data.loading import LoadConfig, LoadSources
from m1data.pipeline import (
    load_stage_dropped,
    read_manifests,
    run_pipeline,
)

FAKE = Path(__file__).parent / "fake_vllm"


@pytest.fixture(scope="module")
def fake_vllm(tmp_path_factory):
    """The vllm test double importable here and in every Ray worker started after this; each
    engine built is logged with its process id."""
    log = tmp_path_factory.mktemp("vllm") / "engines.log"
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "FAKE_VLLM_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAKE), saved["PYTHONPATH"]) if p)
    os.environ["FAKE_VLLM_LOG"] = str(log)
    sys.path.insert(0, str(FAKE))
    try:
        yield log
    finally:
        sys.path.remove(str(FAKE))
        for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
            del sys.modules[name]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def executor(fake_vllm):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'm1data[ray]')")
    from m1data.distributed import ExecutorConfig, RayExecutor

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield RayExecutor(ExecutorConfig(kind="ray", rows_per_block=10))
    finally:
        ray.shutdown()



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
