"""Shared test fixtures. Real rows from ../shared/data are used when that folder exists (it
sits beside the project in development and CI) and the tests that need them skip otherwise."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from m1data.cores import usable_cores

# Property tests draw new examples on every local run (that is how they find what fixtures miss),
# but CI (.ci/run sets M1DATA_TEST_PROFILE=ci) draws the same ones every time: a CI result then
# does not depend on the luck of one run, and a failure there reproduces. Profiles set defaults,
# so this must run before the test modules build their own @settings.
settings.register_profile("ci", derandomize=True)
if os.environ.get("M1DATA_TEST_PROFILE") == "ci":
    settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# M1DATA_SHARED_DATA points elsewhere (a git worktree sits one level deeper than the checkout)
SHARED_DATA = Path(os.environ.get("M1DATA_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
FAKE_VLLM = Path(__file__).parent / "fake_vllm"

# The tests' folders mirror the package (tests/stages/ for m1data/stages/, ...), and test files
# import shared helpers from one another by module name (`from test_dedup import planted`), so
# every folder of tests is on the path from the start, whichever file a worker collects first.
for _folder in sorted({p.parent for p in Path(__file__).parent.rglob("test_*.py")}):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker, and every process its tests start, takes its share of the cores:
    a llama.cpp server, torch or BLAS given every core spins on it while the other workers need
    it (measured beside one busy core, the real-model test: 31 s with two server threads, 23 s
    with one). Values the user set still win."""
    if hasattr(config, "workerinput"):  # a worker (the controller runs no tests)
        share = str(max(1, usable_cores() // config.workerinput["workercount"]))
        for name in ("M1DATA_SERVER_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, share)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()


@pytest.fixture(autouse=True)
def _library_default_output():
    """Every test starts from a library's default (quiet) output; a CLI test turns output on
    through the command's start-up, and it is turned off again here so no later test inherits it."""
    from m1data import output

    output.disable()
    yield
    output.disable()


@pytest.fixture
def shown_output():
    """m1data's messages and bars on, as the CLI has them, for tests that read what was said."""
    from m1data import output

    output.enable()
    yield
    output.disable()


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Iterator[Path]:
    """One local Ray instance per test process (starting one takes 30 s on a busy 2-core machine;
    scripts/test.sh gives each pytest-xdist worker whole files, `--dist loadfile`).

    Its workers can import the vllm test double (tests/fake_vllm), which appends each engine it
    builds to the file this fixture yields: a worker's environment is the one Ray started with,
    so both are set here, for the start only."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'm1data[ray]')")
    log = tmp_path_factory.mktemp("vllm") / "engines.log"
    path = os.pathsep.join(p for p in (str(FAKE_VLLM), os.environ.get("PYTHONPATH")) if p)
    if ray.is_initialized():  # a command run by an earlier test (`--executor ray`) started one without them
        ray.shutdown()
    from m1data.running.distributed import a_ray_token_where_home_cannot_hold_one

    a_ray_token_where_home_cannot_hold_one()  # as the ray executor does: HOME may be read-only
    with _environ(PYTHONPATH=path, FAKE_VLLM_LOG=str(log)):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield log
    finally:
        ray.shutdown()
