"""Time the word n-gram check (m1data.stages.ngram.ngram_overlap) against the per-row version it
replaced, with each one's peak RSS.

    python benchmarks/bench_ngram.py [--sizes 20000,196000,1000000] [--rows-pickle FILE]
                                     [--skip-old-above N]

Rows: ``--rows-pickle``'s (a pickled (training prompts, eval texts) pair) if given, else
benchmarks/perturb.py's (1M synthetic benchmark prompts, ~15K eval texts; about two minutes to
build, once, into a temporary pickle the children read). At each size, the
first N prompts are checked against all eval texts (n=8, max_train_rows=3) in a fresh child
process per implementation. "old" and "new" flag a row for any shared n-gram, and their
verdicts' digests must agree; "share" flags it for holding the stage's ngram_min_share of one eval
text's n-grams, as the Decontaminate stage runs it. Each child reports its wall and CPU seconds, its peak RSS
(ru_maxrss: it includes the rows it loaded, printed as "rows") and how many rows it flagged. ``uptime`` is printed before each size: the
machine is shared, so the load says how contended the times are.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
_WORD = __import__("re").compile(r"\w+")


def old_ngram_overlap(texts: Sequence[str], eval_texts: Sequence[str], n: int = 8,
                      max_train_rows: int | None = None) -> list[int | None]:
    """The implementation before the columnar one: a set of blake2b keys per row."""
    def key(words: Sequence[str]) -> int:
        return int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest(), "little")

    def keys(text: str) -> set[int]:
        words = _WORD.findall(text.lower())
        if not words:
            return set()
        if len(words) < n:
            return {key(words)}
        return {key(words[i:i + n]) for i in range(len(words) - n + 1)}

    train_keys = [keys(t) for t in texts]
    ignored: set[int] = set()
    if max_train_rows is not None:
        rows = Counter(k for ks in train_keys for k in ks)
        ignored = {k for k, r in rows.items() if r > max_train_rows}
    first_eval: dict[int, int] = {}
    for e, text in enumerate(eval_texts):
        for k in keys(text) - ignored:
            first_eval.setdefault(k, e)
    return [min((first_eval[k] for k in ks if k in first_eval), default=None) for ks in train_keys]


def load_rows(path: Path) -> tuple[list[str], list[str]]:
    with path.open("rb") as handle:
        return pickle.load(handle)


def write_rows(path: Path) -> None:
    """The benchmark rows (perturb.py), built once for every child."""
    sys.path.insert(0, str(HERE))
    import perturb

    eval_items, eval_texts = perturb.eval_rows(seed=1)
    rows = perturb.training_rows(1_000_000, seed=0, eval_items=eval_items)
    with path.open("wb") as handle:
        pickle.dump((rows, eval_texts), handle)


def child(impl: str, size: int, path: Path) -> None:
    """One measurement, printed as a JSON line (run in a fresh process for its own ru_maxrss)."""
    rows, eval_texts = load_rows(path)
    rows = rows[:size]
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if impl == "old":
        run = old_ngram_overlap
    else:
        from m1data.stages.dedup import DecontaminateConfig
        from m1data.stages.ngram import ngram_overlap

        share = DecontaminateConfig().ngram_min_share if impl == "share" else None
        run = functools.partial(ngram_overlap, min_share=share)
    wall, cpu = time.perf_counter(), time.process_time()
    hits = run(rows, eval_texts, n=8, max_train_rows=3)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({
        "impl": impl, "rows": len(rows), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows_rss_mb": round(loaded), "flagged": sum(h is not None for h in hits),
        "digest": hashlib.sha256(json.dumps(hits).encode()).hexdigest()[:12],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,196000,1000000")
    parser.add_argument("--rows-pickle", type=Path, help="a pickled (prompts, eval texts) pair to use")
    parser.add_argument("--skip-old-above", type=int, default=10**9, help="old is slow: skip it above N rows")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.rows_pickle)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.rows_pickle is None:
            args.rows_pickle = Path(tmp) / "rows.pkl"
            write_rows(args.rows_pickle)
        print(f"cores: {os.cpu_count()}, rows: {args.rows_pickle}")
        measure(args)


def measure(args: argparse.Namespace) -> None:
    for size in (int(s) for s in args.sizes.split(",")):
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        results = {}
        for impl in ("old", "new", "share"):
            if impl == "old" and size > args.skip_old_above:
                continue
            done = subprocess.run([sys.executable, __file__, "--child", impl, str(size),
                                   "--rows-pickle", str(args.rows_pickle)],
                                  capture_output=True, text=True, check=True)
            results[impl] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[impl]
            print(f"{size:>9} rows  {impl}: {r['wall_s']:7.2f} s wall  {r['cpu_s']:7.2f} s CPU  "
                  f"peak RSS {r['peak_rss_mb']:6} MB (rows {r['rows_rss_mb']} MB)  flagged {r['flagged']}",
                  flush=True)
        if "old" in results:
            same = results["old"]["digest"] == results["new"]["digest"]
            speedup = results["old"]["wall_s"] / max(results["new"]["wall_s"], 1e-9)
            print(f"{size:>9} rows  same verdicts: {same}  speed-up {speedup:.1f}x", flush=True)


if __name__ == "__main__":
    main()
