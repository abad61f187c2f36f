"""Shared test fixtures. Real rows from ../shared/data are used when that folder exists (it
sits beside the project in development and CI) and the tests that need them skip otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# M1DATA_SHARED_DATA points elsewhere (a git worktree sits one level deeper than the checkout)
SHARED_DATA = Path(os.environ.get("M1DATA_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


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
