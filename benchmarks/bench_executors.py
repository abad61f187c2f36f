"""Does the offline MeSH tagger tag real rows the same on Ray as locally, at scale?

The tagger embeds questions in batches. On Ray every worker embeds its own blocks, so a row
meets other neighbours in its batch than it does locally, and padding differs; whether that can
move a row's argmax is what this measures, on every real question in ../shared/data (MedQA 4- and
5-option test files, HeadQA train/dev/test, PubMedQA), about 11K rows.

    python benchmarks/bench_executors.py [--shared ../shared/data] [--rows N] [--ray-cpus 2]

Prints rows, wall time under each executor, the rows whose code differs and, for those, the
cosine margin between the two codes under the local run (how close the call was).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m1data.running.distributed import ExecutorConfig, RayExecutor
from m1data.stages.mesh_offline import OfflineConfig, OfflineTagger
from m1data.running.pipeline import RunContext
from m1data.reading.sources import load_source

FILES = [
    ("medqa", "raw/medqa/4_options_phrases_no_exclude_test.jsonl"),
    ("medqa", "raw/medqa/US_test_5_options.jsonl"),
    ("headqa", "raw/headqa/train_HEAD_EN.json"),
    ("headqa", "raw/headqa/dev_HEAD_EN.json"),
    ("headqa", "raw/headqa/test_HEAD_EN.json"),
    ("pubmedqa", "raw/pubmedqa/ori_pqal.json"),
]


def real_rows(shared: Path, limit: int | None) -> datasets.Dataset:
    parts = [load_source(name, shared / path, split="train" if name == "pubmedqa" else None).rows
             for name, path in FILES]
    rows = datasets.concatenate_datasets(parts)
    return rows.select(range(min(limit, len(rows)))) if limit else rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--rows", type=int, default=None, help="at most this many rows (default: all)")
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args()

    rows = real_rows(args.shared, args.rows)
    print(f"rows: {len(rows):,}")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(run_dir=Path(tmp), stage_dir=Path(tmp))
        started = time.perf_counter()
        local = OfflineTagger(OfflineConfig()).run(rows, ctx)
        local_s = time.perf_counter() - started

        executor = RayExecutor(ExecutorConfig(kind="ray", num_cpus=args.ray_cpus))
        started = time.perf_counter()
        on_ray = executor.run_stage(OfflineTagger(OfflineConfig()), rows, ctx)
        ray_s = time.perf_counter() - started

    differ = [i for i, (a, b) in enumerate(zip(local.rows["domain_code"], on_ray.rows["domain_code"], strict=True))
              if a != b]
    print(f"local: {local_s:.1f} s; ray ({args.ray_cpus} CPUs): {ray_s:.1f} s")
    print(f"rows with a different code: {len(differ):,} of {len(rows):,}; "
          f"ids identical: {local.rows['id'] == on_ray.rows['id']}; stats identical: {local.stats == on_ray.stats}")
    if differ:
        from m1data.stages.mesh_offline import ZeroShotTagger

        tagger = ZeroShotTagger()
        for i in differ[:20]:
            scores = tagger.scores([rows[i]["prompt"]])[0]
            a, b = local.rows["domain_code"][i], on_ray.rows["domain_code"][i]
            print(f"  {rows[i]['id']}: local {a} ray {b}, local cosine margin {scores[int(a)] - scores[int(b)]:.2e}")


if __name__ == "__main__":
    main()
