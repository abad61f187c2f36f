"""The README's library examples run as written, and the front door exports what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def library_examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Use it as a library", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_readme_has_an_example_for_each_of_the_four() -> None:
    joined = "\n".join(library_examples())
    for name in ("extract_answer", "decontaminate", "stratified_sample", "OfflineTagger"):
        assert "from m1data import" in joined and name in joined


@pytest.mark.parametrize("index", range(4))
def test_readme_library_example_runs(index: int) -> None:
    examples = library_examples()
    assert len(examples) == 4
    exec(compile(examples[index], f"README example {index + 1}", "exec"), {})  # noqa: S102 (the point)


def test_front_door_is_lazy_and_complete() -> None:
    code = (
        "import sys, m1data\n"
        "assert 'datasets' not in sys.modules and 'numpy' not in sys.modules, 'import m1data is not light'\n"
        "names = ['stratified_sample', 'random_sample', 'deduplicate', 'decontaminate', 'find_duplicates',\n"
        "         'find_contamination', 'extract_answer', 'load_source', 'load_eval', 'MeshTagger',\n"
        "         'OfflineTagger', 'Stage', 'run_pipeline']\n"
        "assert set(names) <= set(m1data.__all__)\n"
        "for n in names: assert callable(getattr(m1data, n)), n\n"
        "assert sorted(m1data.__all__) == sorted(['__version__', *m1data._EXPORTS])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fuzzy_engine_needs_no_datasets() -> None:
    code = "import sys, m1data.fuzzy\nassert 'datasets' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
