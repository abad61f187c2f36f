"""Benchmark m1data.dedup against a plain all-pairs rapidfuzz baseline.

    python benchmarks/bench_dedup.py [--rows 20000] [--full] [--seed 0]

Default run: the same ``--rows`` synthetic training prompts are deduplicated by
1. the baseline: ``rapidfuzz.process.cdist`` over all pairs (each row chunk against the rows
   after it, ``score_cutoff``, ``workers=2``), and
2. ``m1data.fuzzy.find_duplicates``;
both times, their ratio and whether the outputs are identical are printed.

``--full``: 196,000 rows deduplicated and decontaminated against ~15,000 eval items, timed at
50K, 100K and the full size, with peak memory (ru_maxrss). Rows come from benchmarks/perturb.py;
their length distribution is printed next to the real source prompts'.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perturb  # noqa: E402

from m1data.dedup import DupMatch, EvalText, find_contamination, find_duplicates  # noqa: E402


def baseline_duplicates(texts: list[str], threshold: float, chunk: int = 256,
                        workers: int = 2) -> list[DupMatch]:
    """All pairs with cdist; for each row the earliest earlier row scoring >= threshold.

    Scores are float64 and compared with ``>=`` here (cdist's own cutoff is lowered by 0.1,
    see m1data.fuzzy._verify), so the baseline's boundary is that of ``fuzz.ratio``.
    """
    n = len(texts)
    earliest = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        block = process.cdist(texts[r0:r1], texts[r0:], scorer=fuzz.ratio,
                              score_cutoff=max(0.0, threshold - 0.1), dtype=np.float64,
                              workers=workers)
        rows, cols = np.nonzero(block >= threshold)
        i = rows + r0
        j = cols + r0
        keep = j > i
        for a, b in zip(i[keep], j[keep]):
            if earliest[b] < 0 or a < earliest[b]:
                earliest[b] = a
                score[b] = block[a - r0, b - r0]
    return [DupMatch(j, int(earliest[j]), float(score[j])) for j in range(n) if earliest[j] >= 0]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def compare(rows: list[str], threshold: float) -> None:
    print(f"rows: {perturb.length_summary(rows)}", flush=True)
    times = []
    for _ in range(3):  # the first call also pays one-off costs (BLAS thread start-up)
        t0 = time.perf_counter()
        ours = find_duplicates(rows, threshold=threshold)
        times.append(time.perf_counter() - t0)
    t_first, t_ours = times[0], min(times)
    print(f"m1data.find_duplicates: first call {t_first:.2f}s, best of 3 {t_ours:.2f}s, "
          f"{len(ours)} removed", flush=True)
    t0 = time.perf_counter()
    base = baseline_duplicates(rows, threshold)
    t_base = time.perf_counter() - t0
    print(f"baseline all-pairs cdist (workers=2): {t_base:.2f}s, {len(base)} removed")
    print(f"speed-up: {t_base / t_ours:.1f}x (best of 3), {t_base / t_first:.1f}x (first call); "
          f"identical output: {ours == base}")


def full(rows: list[str], evals: list[EvalText], threshold: float) -> None:
    print(f"eval items: {perturb.length_summary([e.text for e in evals])}", flush=True)
    for n in (50_000, 100_000, len(rows)):
        part = rows[:n]
        t0 = time.perf_counter()
        dups = find_duplicates(part, threshold=threshold)
        t_dup = time.perf_counter() - t0
        t0 = time.perf_counter()
        cont = find_contamination(part, evals, threshold=threshold)
        t_con = time.perf_counter() - t0
        print(f"{n:>7,} rows: dedup {t_dup:6.1f}s ({len(dups):,} removed), "
              f"decontam {t_con:6.1f}s ({len(cont):,} removed), total {t_dup + t_con:6.1f}s, "
              f"peak RSS so far {peak_rss_gb():.2f} GB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--full-rows", type=int, default=196_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=95.0)
    args = ap.parse_args()
    if not perturb.DATA.is_dir():
        sys.exit(f"{perturb.DATA} not found: the benchmark needs ../shared/data")

    t0 = time.perf_counter()
    eval_items, eval_texts = perturb.eval_rows(seed=args.seed + 1)
    n_rows = args.full_rows if args.full else args.rows
    rows = perturb.training_rows(n_rows, seed=args.seed, eval_items=eval_items)
    print(f"generated in {time.perf_counter() - t0:.1f}s (seed {args.seed})")
    print(f"real prompts, source-mix weighted: {perturb.length_summary(perturb.mix_weighted_real_prompts())}")
    print(f"real prompts, every source row once: {perturb.length_summary(perturb.real_training_prompts())}")
    if args.full:
        evals = [EvalText("eval", str(i), t) for i, t in enumerate(eval_texts)]
        print(f"rows: {perturb.length_summary(rows)}")
        full(rows, evals, args.threshold)
    else:
        compare(rows, args.threshold)


if __name__ == "__main__":
    main()
