"""Normalise 196K rows (the size of m1's raw pool) and print the time.

No full raw source is available offline, so real rows from ../shared/data are scaled up to
Table 3's counts: MedMCQA's 182,822 rows are built in MedMCQA's native JSONL shape from the
real MedQA, HeadQA and MMLU questions (each repeated with a fresh uuid and a numbered suffix so
no two are identical), MedQA's 10,178 rows repeat the real 1,273 test rows with suffixes,
HeadQA's train file (2,657) and PubMedQA's pool (500) are used as they are.

    python benchmarks/bench_load.py [--shared ../shared/data]
    python benchmarks/bench_load.py --mapped 1000000 [--shards 8]

``--mapped N``: a pool of a user's own, N rows of the same real questions in one parquet file
(question, opa..opd, a letter key, id), loaded through a column mapping (`load_source("mine",
path, mapping=...)`, what `m1data load mine --mapping ...` runs) in a fresh process: wall time
and that process's peak RSS. ``--shards K``: the same rows as a folder of K parquet shards named
as a Hub export names them (train-00000-of-0000K.parquet ...), loaded as one source.
``--src DIR`` loads with the m1data of DIR (an earlier checkout, ``git worktree add``) instead,
for a before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
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


def mapped(items, n: int, tmp: Path, src: str | None, shards: int = 1) -> None:
    """N rows of a user's parquet file (or K shards of it) through a column mapping, in a fresh
    process (see ``--mapped``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [items[i % len(items)] for i in range(n)]
    table = pa.table({"id": [f"r{i}" for i in range(n)],
                      "question": [f"{q} (variant {i})" for i, (q, _, _) in enumerate(rows)],
                      **{col: [opts[k] for _, opts, _ in rows] for k, col in enumerate(("opa", "opb", "opc", "opd"))},
                      "ans": ["ABCD"[right] for _, _, right in rows]})
    if shards == 1:
        path = tmp / "mine.parquet"
        pq.write_table(table, path)
    else:
        path = tmp / "data"
        path.mkdir()
        size = -(-n // shards)
        for i in range(shards):
            pq.write_table(table.slice(i * size, size), path / f"train-{i:05d}-of-{shards:05d}.parquet")
    env = dict(os.environ, PYTHONPATH=src) if src else None
    subprocess.run([sys.executable, __file__, "--load-file", str(path)], check=True, env=env)


def load_file(path: Path) -> None:
    t0 = time.perf_counter()
    result = load_source("mine", path,
                         mapping={"question": "question", "options": ["opa", "opb", "opc", "opd"], "answer": "ans", "id": "id"})
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    n = len(result.rows) + len(result.dropped)
    print(f"mapped    {n:>8,} rows ({len(result.dropped):,} dropped) in {elapsed:6.2f} s ({n / elapsed:,.0f} rows/s); "
          f"peak RSS {peak:.2f} GB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    parser.add_argument("--mapped", type=int, metavar="N", help="load N rows of a user's parquet file instead")
    parser.add_argument("--shards", type=int, default=1, metavar="K", help="--mapped: as a folder of K parquet shards")
    parser.add_argument("--src", help="--mapped: the m1data of this checkout")
    parser.add_argument("--load-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_file:
        load_file(args.load_file)
        return
    if args.mapped:
        with tempfile.TemporaryDirectory() as tmp:
            mapped(real_questions(args.shared), args.mapped, Path(tmp), args.src, args.shards)
        return
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
