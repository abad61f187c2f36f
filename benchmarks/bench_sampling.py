"""Time the m1K samplers on a synthetic m23K built from the paper's Table 4.

Run: ``python benchmarks/bench_sampling.py [--repeats 20] [--trace-chars 4000]``.

``--trace-chars`` adds a text column of that many characters per row, standing in for the
reasoning traces of the real m23K, to show that grouping reads only the level columns.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import datasets

from m1data.stages.sampling import random_sample, stratified_sample

TABLE4 = Path(__file__).resolve().parent.parent / "tests" / "data" / "table4_counts.csv"


def synthetic_m23k(trace_chars: int) -> datasets.Dataset:
    """One row per m23K question of Table 4 (23,493 rows), optionally with a bulky text column."""
    domains: list[str] = []
    sources: list[str] = []
    with TABLE4.open(newline="") as handle:
        for row in csv.DictReader(handle):
            count = int(row["m23k"])
            domains += [row["domain"]] * count
            sources += [row["source"]] * count
    columns: dict[str, list] = {"domain": domains, "source": sources}
    if trace_chars > 0:
        columns["trace"] = ["x" * trace_chars] * len(domains)
    return datasets.Dataset.from_dict(columns)


def time_call(call: Callable[[int], datasets.Dataset], repeats: int) -> tuple[float, float, float]:
    """(first, best, median) seconds; the first call includes one-off imports and caches."""
    timings = []
    for seed in range(repeats):
        start = time.perf_counter()
        call(seed)
        timings.append(time.perf_counter() - start)
    return timings[0], min(timings), statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--trace-chars", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    ds = synthetic_m23k(args.trace_chars)
    print(f"built synthetic m23K: {len(ds)} rows in {time.perf_counter() - start:.3f}s")

    full = len(ds)
    n = args.n
    cases: dict[str, tuple[int, Callable[[int], datasets.Dataset]]] = {
        "stratified domain->source": (n, lambda seed: stratified_sample(ds, n, seed=seed)),
        "stratified domain": (n, lambda seed: stratified_sample(ds, n, ("domain",), seed=seed)),
        "stratified, every row": (full, lambda seed: stratified_sample(ds, full, seed=seed)),
        "random": (n, lambda seed: random_sample(ds, n, seed=seed)),
    }
    for name, (target, call) in cases.items():
        first, best, median = time_call(call, args.repeats)
        print(
            f"{name:26s} {len(ds)} -> {min(target, len(ds)):5d}: first {first * 1000:7.1f} ms  "
            f"best {best * 1000:7.1f} ms  median {median * 1000:7.1f} ms  ({args.repeats} seeds)"
        )

if __name__ == "__main__":
    main()
