"""Normalise 196K rows (the size of m1's raw pool) and print the time.

No full raw source is available offline, so real rows from ../shared/data are scaled up to
Table 3's counts: MedMCQA's 182,822 rows are built in MedMCQA's native JSONL shape from the
real MedQA, HeadQA and MMLU questions (each repeated with a fresh uuid and a numbered suffix so
no two are identical), MedQA's 10,178 rows repeat the real 1,273 test rows with suffixes,
HeadQA's train file (2,657) and PubMedQA's pool (500) are used as they are.

    python benchmarks/bench_load.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

from m1data.reading.sources import load_source

COUNTS = {"medmcqa": 182_822, "medqa": 10_178}


def real_questions(shared: Path) -> list[dict]:
    """(question, 4 options, right index) from real MedQA and HeadQA rows."""
    items = []
    for line in (shared / "raw/medqa/4_options_phrases_no_exclude_test.jsonl").read_text().splitlines():
        row = json.loads(line)
        opts = [row["options"][k] for k in "ABCD"]
        items.append((row["question"], opts, "ABCD".index(row["answer_idx"])))
    heads = json.loads((shared / "raw/headqa/train_HEAD_EN.json").read_text())
    for exam in heads["exams"].values():
        for q in exam["data"]:
            opts = [a["atext"] for a in q["answers"]][:4]
            right = int(q["ra"]) - 1
            if right < 4:
                items.append((q["qtext"], opts, right))
    return items


def write_medmcqa(path: Path, items, n: int, rng: random.Random) -> None:
    with path.open("w") as handle:
        for i in range(n):
            question, opts, right = items[i % len(items)]
            row = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "question": f"{question} (variant {i})",
                   "opa": opts[0], "opb": opts[1], "opc": opts[2], "opd": opts[3], "cop": right,
                   "choice_type": "single", "exp": "", "subject_name": "bench", "topic_name": "bench"}
            handle.write(json.dumps(row) + "\n")


def write_medqa(path: Path, shared: Path, n: int) -> None:
    lines = (shared / "raw/medqa/4_options_phrases_no_exclude_test.jsonl").read_text().splitlines()
    with path.open("w") as handle:
        for i in range(n):
            row = json.loads(lines[i % len(lines)])
            row["question"] = f"{row['question']} (variant {i})"
            handle.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    args = parser.parse_args()
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_medmcqa(tmp / "medmcqa.jsonl", real_questions(args.shared), COUNTS["medmcqa"], rng)
        write_medqa(tmp / "medqa.jsonl", args.shared, COUNTS["medqa"])
        inputs = {
            "medmcqa": tmp / "medmcqa.jsonl",
            "medqa": tmp / "medqa.jsonl",
            "headqa": args.shared / "raw/headqa/train_HEAD_EN.json",
            "pubmedqa": args.shared / "raw/pubmedqa/ori_pqal.json",
        }
        total_rows, began = 0, time.perf_counter()
        for name, path in inputs.items():
            t0 = time.perf_counter()
            result = load_source(name, path)
            n = len(result.rows) + len(result.quarantine)
            total_rows += n
            print(f"{name:9s} {n:>8,} rows in {time.perf_counter() - t0:6.2f} s")
        elapsed = time.perf_counter() - began
        print(f"total     {total_rows:>8,} rows in {elapsed:6.2f} s  ({total_rows / elapsed:,.0f} rows/s; target < 30 s)")


if __name__ == "__main__":
    main()
