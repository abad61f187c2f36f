"""scripts/make_sample.py regenerates the embedded sample byte for byte, and its checks bite.

The sample is what the README's main job and many tests run on, so the committed files must be
exactly what the script writes from scripts/sample_facts.yaml (`--check` compares them).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_sample.py"
SAMPLE = ROOT / "m1data" / "data" / "sample"


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", *args], check=False, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def load_script():
    spec = importlib.util.spec_from_file_location("make_sample", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_sample"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_check_regenerates_the_committed_sample_byte_for_byte() -> None:
    done = run_check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SAMPLE}: identical to what make_sample.py writes (9 files)" in done.stdout
    # the closest pairs it lists start with the 11 planted copies (5 in training, 6 in eval sets)
    listed = [line.split() for line in done.stdout.splitlines() if line[:6].strip().replace(".", "").isdigit()]
    assert len(listed) > 11
    assert all(min(float(raw), float(norm)) >= 95 for raw, norm, *_ in listed[:11])
    assert all(max(float(raw), float(norm)) < 92 for raw, norm, *_ in listed[11:])


def test_check_fails_and_names_the_files_when_the_sample_differs(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    shutil.copytree(SAMPLE, sample)
    medqa = sample / "medqa" / "train.jsonl"
    medqa.write_text(medqa.read_text(encoding="utf-8").replace("year-old", "year old", 1))
    (sample / "notes.txt").write_text("not written by the script\n")
    (sample / "eval" / "mmlu" / "clinical_knowledge_test.csv").unlink()

    done = run_check("--out", str(sample))
    assert done.returncode == 1
    assert "differs: medqa/train.jsonl" in done.stdout
    assert "missing from the new sample: notes.txt" in done.stdout
    assert "only in the new sample: eval/mmlu/clinical_knowledge_test.csv" in done.stdout
    assert "3 file(s) differ" in done.stderr


def test_checks_fail_when_m1data_does_not_find_exactly_the_planted_copies(tmp_path: Path) -> None:
    """The self-check compares m1data's dedup/decontamination results with the planted pairs."""
    make_sample = load_script()
    report = make_sample.make(tmp_path)
    make_sample.check(tmp_path, report)  # the real sample passes

    fewer = dataclasses.replace(report, dup_pairs=report.dup_pairs[1:])
    with pytest.raises(SystemExit, match="dedup found"):
        make_sample.check(tmp_path, fewer)
    more = dataclasses.replace(report, eval_pairs=[*report.eval_pairs, ("medqa:x", "medqa_test:y")])
    with pytest.raises(SystemExit, match="decontamination found"):
        make_sample.check(tmp_path, more)
